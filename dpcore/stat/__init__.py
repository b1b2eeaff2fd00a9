"""Statistics from data, in one place (host side, NumPy).

descriptor  environment-matrix ``davg``/``dstd`` (SPEC 2.4) and the ``stat_file`` cache
neighbor    neighbour statistics of a data set and ``sel: "auto"`` (SPEC 11.2)
labels      fparam/aparam normalisation and the energy ``out_bias`` (SPEC 5.3, 5.4)
"""
