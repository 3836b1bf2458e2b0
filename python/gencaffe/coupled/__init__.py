"""Coupled recognition/generation nets (Flach, Shekhovtsov & Fikar 2017):
sampling the trained reverse model class by class (sampling) and the
captioned PNG grids of the samples (grids). The nets themselves come from
gencaffe.nets.coupled; the runs from gencaffe.experiments.coupled_runs."""
