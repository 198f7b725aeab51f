"""The configuration Hydra composes (a package so that an installed wheel carries it: pkg://rlpractice.conf)."""
