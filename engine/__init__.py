"""The ML layer of the APC Workbench: discriminators, the APC scorer, generation, synthesis, DPO.

Usable as a library without the app. Nothing heavy (torch, transformers, trl, peft) is imported
at package import time; each module imports them inside the functions that need them.
"""
