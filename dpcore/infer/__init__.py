"""Evaluation of frames on the host side: input checks, type sorting and neighbour lists
(:mod:`dpcore.infer.inputs`), and the error statistics of ``dpcore test`` (:mod:`dpcore.infer.metrics`)."""
