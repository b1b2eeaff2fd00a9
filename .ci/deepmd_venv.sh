#!/usr/bin/env bash
# DeePMD-kit 3.2.0 in its own virtualenv, for the interoperability tests (DeePMD-kit reads dpcore's files,
# `dp convert-backend` to .pth/.pb, `dp test` agrees).  Location: $DPCORE_DPKIT_VENV, default .dpkit-venv/
# in the repository (ignored by git).  Idempotent: an existing venv with deepmd-kit 3.2.0 is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DPCORE_DPKIT_VENV:-$PWD/.dpkit-venv}"
if [ -x "$VENV/bin/dp" ] && "$VENV/bin/python" -c "import deepmd, sys; sys.exit(deepmd.__version__ != '3.2.0')" 2>/dev/null; then
    echo "DeePMD-kit venv: $VENV (present)"
else
    python -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    # torch 2.13.0 is the local CPU wheel (any other spec pulls CUDA packages); e3nn is needed by dp convert-backend
    "$VENV/bin/pip" install -q "deepmd-kit==3.2.0" "torch==2.13.0" tensorflow-cpu e3nn
fi
# The wheel's compiled PyTorch op is built for torch 2.11 and `import deepmd.pt` fails with 2.13: replace the
# loader by a stub (the op is only used for compression and LAMMPS, not by these tests).
CXX_OP="$("$VENV/bin/python" -c "import deepmd, os; print(os.path.join(os.path.dirname(deepmd.__file__), 'pt', 'cxx_op.py'))")"
if ! grep -q "dpcore CI stub" "$CXX_OP"; then
    cp "$CXX_OP" "$CXX_OP.orig"
    printf '# dpcore CI stub: the compiled op of this wheel is built for torch 2.11 (only used for compression and LAMMPS)\nENABLE_CUSTOMIZED_OP = False\n' > "$CXX_OP"
fi
"$VENV/bin/python" -c "import deepmd.pt, deepmd.infer; print('DeePMD-kit', __import__('deepmd').__version__, 'ready in', '$VENV')"
