"""Whether this machine can build fxanalog's C extension (fxanalog._normal):
a C compiler and the Python headers. Where it can, the install must have
built it; where it cannot, the install skips it and the tests that need it
are skipped."""

import os
import shutil
import sysconfig


def can_build_c_extension() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    has_compiler = shutil.which(cc) is not None or shutil.which("gcc") is not None or shutil.which("cc") is not None
    has_headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    return has_compiler and has_headers
