"""THE tolerance table, shared by the conformance suite, the shipped physics checks and dpcore's tests.

``TOLERANCES[precision]``: relative tolerance of a backend's output against the NumPy reference, as
``max |x - r| / max |r|`` over the output (see :mod:`dpcore.conformance.compare`); ``precision`` is
the least precise of the output dtype and the model's compute precision.

``FD_TOL``: analytic derivatives (forces, virials) against five-point finite differences of the
energy, relative to the largest component of the finite-difference result (float64 models).
"""

TOLERANCES = {"float64": 1e-12, "float32": 1e-5}
FD_TOL = 1e-8
