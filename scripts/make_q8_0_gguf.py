#!/usr/bin/env python3
"""Write a Q8_0 copy of a GGUF with llama.cpp's own quantizer (through
llama-cpp-python), for same-run Q8_0 speed comparisons:

    /tmp/lcpp/bin/python scripts/make_q8_0_gguf.py IN.gguf OUT.gguf
    /tmp/lcpp/bin/python scripts/llama_cpp_bench.py --model OUT.gguf

Re-quantizing an already quantized file (allow_requantize) changes the
weights' values slightly, not the work per token: the speed of a Q8_0 file
made from f16 weights is the same.
"""
import ctypes
import sys

import llama_cpp


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    p.allow_requantize = True
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed with code {rc}")


if __name__ == "__main__":
    main()
