"""Runs the reference framework (ReChorus, branch CIKM22) unchanged under today's numpy, to
time it next to timirec. Usage: python3 run_rechorus.py RECHORUS_SRC_DIR [main.py flags...]

The reference was written for numpy 1.22 and uses the aliases np.int/np.float/np.object that
numpy 1.24 removed; they are restored here (as the builtins they always were) before main.py
runs. Nothing else is changed. The source is not part of timirec: copy it from the reference
repository into a git-ignored folder (bench/reference_epoch.sh says how)."""
import os
import runpy
import sys

import numpy as np

for name, builtin in (("int", int), ("float", float), ("object", object), ("bool", bool)):
    if not hasattr(np, name):
        setattr(np, name, builtin)

src = os.path.abspath(sys.argv[1])
os.chdir(src)
sys.path.insert(0, src)
sys.argv = [os.path.join(src, "main.py")] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
