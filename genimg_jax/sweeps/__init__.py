"""Sweeps as data: specs (`spec`: axis, product, zipped, chain), running them (`run`) and their
report (`report`)."""
