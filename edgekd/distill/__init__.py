"""Distillation: KD losses (`edgekd.distill.losses`), recipes and the trainer that combines them.

Kept import-free: importing one submodule does not load the others (or torch).
"""

from edgekd._callable_package import make_callable

make_callable(__name__)
