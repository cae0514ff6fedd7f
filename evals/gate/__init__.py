"""``parity check``: the rule language (``rules``) and the command (``cli``) that fails a CI build."""
