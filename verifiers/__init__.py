"""The built-in verifiers, installed as `rlpractice.verifiers`; each module registers its names with @verifier."""
