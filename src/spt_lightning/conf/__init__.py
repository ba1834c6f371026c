"""Hydra configs of spt-lightning (a package so that they are found when installed)."""
