"""Sweeps: a grid of runs handed to an existing engine (a local process pool, Slurm via submitit, Ray).

robench schedules nothing itself: it expands the grid into content-addressed runs (`grid`),
hands the unfinished ones to a launcher, and reads state back from the run folders (`status`).
"""
