"""Distillation: KD losses (`edgekd.distill.losses`), recipes and the trainer that combines them.

Kept import-free: importing one submodule does not load the others (or torch).
"""
