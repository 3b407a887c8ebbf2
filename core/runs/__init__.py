"""Work on saved runs: the only layer whose functions take a workspace and a run (the ``Run`` handle)."""
