"""I/O at the edges: the only code in lcup that touches disk or network."""
