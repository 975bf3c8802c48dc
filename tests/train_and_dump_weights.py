"""`python -m kerasgen.train ARGS`, then the trained weights of this process (a worker's too,
which writes no run directory) saved to $KERASGEN_WEIGHTS as an .npz: what the multi-worker tests
compare."""
import os
import sys

import numpy as np

from kerasgen import train, trainer

_train_run = trainer.train_run


def _train_run_and_dump(model, *args, **kwargs):
    result = _train_run(model, *args, **kwargs)
    np.savez(os.environ["KERASGEN_WEIGHTS"], *model.get_weights())
    return result


trainer.train_run = _train_run_and_dump
sys.exit(train.main(sys.argv[1:]))
