"""The ``retrain`` command line (also ``python -m retrain_lib``), one module per command group.

:mod:`~retrain_lib.cli.app` assembles the parser and holds ``main`` (the console entry
point); :mod:`~retrain_lib.cli.parsing`, :mod:`~retrain_lib.cli.output` and
:mod:`~retrain_lib.cli.runner` are the pieces every command module shares; each
``*_cmds`` module adds its commands with ``register(sub)``. This package module imports
nothing, so ``python -m retrain_lib.cli.serving_cmds`` runs a group alone without loading
it twice.
"""
