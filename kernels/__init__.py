"""reefd.kernels: the vetted kernel library.

Owns the catalog of kernel specs (shape rules, extents, torch references) and, in
later issues, the CUDA C bodies, the wrapper generator and the NVRTC build. Imports
torch and reefd.errors only.
"""
