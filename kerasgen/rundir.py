"""A run directory: the one place that knows its layout, writes its files atomically and loads its models.

    runs/<model>/<YYYYmmdd-HHMMSS>/
        config.json             resolved settings: model name, family, training, recipe, model config
        model.keras             the last epoch's model ("final")
        checkpoints/best.keras  the epoch with the best monitored score ("best")
        backup/                 the last finished epoch's training state, for --resume
        logs/                   TensorBoard: train/, validation/, and the family's own parts
        summary.json            final scores; written last, so it marks a finished run

Importing this module does not import TensorFlow.
"""
import contextlib
import datetime
import fcntl
import glob
import json
import os
import re
import shlex
import zipfile

from kerasgen.errors import RunError

RUNS_ROOT = "runs"
CHECKPOINTS = ("best", "final")


def atomic_write(path, data):
    """Writes `data` (str or bytes) to `path` through a temporary sibling and a rename, so a
    reader or a crash sees the old file or the new one, never half of one."""
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise RunError(f"cannot write {path}: {e.strerror or e}") from None


def atomic_save_model(model, path):
    """model.save(path) through a temporary sibling and a rename."""
    temporary = f"{path[:-len('.keras')]}.tmp-{os.getpid()}.keras"
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise RunError(f"cannot write {path}: {e.strerror or e}") from None


def _read_json(path, remedy=""):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is corrupted (not JSON: {e}){remedy}") from None
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None


class RunDir:
    """Paths, config, summary, checkpoints, backup state and lock of one run directory."""

    CONFIG = "config.json"
    SUMMARY = "summary.json"
    FINAL = "model.keras"
    BEST = os.path.join("checkpoints", "best.keras")
    BACKUP = "backup"
    BACKUP_STATE = "state.json"  # the commit point of a backup: it names the weights file it goes with
    LOGS = "logs"
    LOCK = ".lock"
    CONFIG_KEYS = ("model_name", "family", "train", "recipe", "model")

    def __init__(self, path):
        self.path = path

    def __str__(self):
        return self.path

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    @property
    def config_path(self):
        return self.join(self.CONFIG)

    @property
    def summary_path(self):
        return self.join(self.SUMMARY)

    @property
    def backup_dir(self):
        return self.join(self.BACKUP)

    @property
    def backup_state_path(self):
        return os.path.join(self.backup_dir, self.BACKUP_STATE)

    @property
    def logs_dir(self):
        return self.join(self.LOGS)

    def log_dir(self, part):
        """TensorBoard's directory for one part of the run (train, validation, samples, images)."""
        return self.join(self.LOGS, part)

    def checkpoint_path(self, which):
        """'final' (model.keras) or 'best' (checkpoints/best.keras)."""
        return self.join({"final": self.FINAL, "best": self.BEST}[which])

    # -- finding and creating -------------------------------------------------------------
    @classmethod
    def check_new(cls, path):
        """Refuses a path that holds a run or anything else (a new run needs an empty place)."""
        if os.path.exists(os.path.join(path, cls.CONFIG)):
            trainer = cls(path).trainer()
            if trainer:
                raise RunError(f"{path} is being trained now by {trainer}; wait for it to finish, "
                               f"or choose another --out")
            raise RunError(f"{path} already holds a run; continue it with --resume "
                           f"{shlex.quote(path)}, or choose another --out")
        if os.path.exists(path) and not (os.path.isdir(path) and not os.listdir(path)):
            raise RunError(f"{path} is not empty; choose an empty or new --out directory")

    @classmethod
    def create(cls, model_name, path=None, root=RUNS_ROOT):
        """A new, empty run directory: `path`, or root/<model>/<timestamp>. An existing run
        is never reused (that is what --resume is for)."""
        if path is not None:
            cls.check_new(path)
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as e:
                raise RunError(f"cannot create {path}: {e.strerror or e}") from None
            return cls(path)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        for suffix in ["", *(f"-{i}" for i in range(2, 100))]:
            candidate = os.path.join(root, model_name, stamp + suffix)
            try:
                os.makedirs(candidate)  # fails if another run took the name first
                return cls(candidate)
            except FileExistsError:
                continue
            except OSError as e:
                raise RunError(f"cannot create {candidate}: {e.strerror or e}") from None
        raise RunError(f"too many runs started in one second under {root}/{model_name}")

    @classmethod
    def find(cls, path, root=RUNS_ROOT):
        """The run at `path`; 'latest' is the most recently started run under root/."""
        if path == "latest":
            configs = glob.glob(os.path.join(root, "*", "*", cls.CONFIG))
            if not configs:
                raise RunError(f"--run latest: no runs under {root}/ yet (train one first)")
            path = os.path.dirname(max(configs, key=os.path.getmtime))
        run = cls(path)
        if not os.path.isdir(path):
            raise RunError(f"{path} does not exist")
        if not os.path.isfile(run.config_path):
            raise RunError(f"{path} is not a run directory (no {cls.CONFIG})")
        return run

    # -- files ----------------------------------------------------------------------------
    def read_config(self):
        """config.json, checked for the sections every command relies on."""
        config = _read_json(self.config_path)
        if not isinstance(config, dict):
            raise RunError(f"{self.config_path} is corrupted (not a JSON object)")
        missing = [key for key in self.CONFIG_KEYS if key not in config]
        if missing:
            raise RunError(f"{self.config_path} is corrupted (missing {', '.join(missing)})")
        for key in ("train", "recipe", "model"):
            if not isinstance(config[key], dict):
                raise RunError(f"{self.config_path} is corrupted ('{key}' is not an object)")
        return config

    def train_config(self):
        """The run's TrainConfig, as config.json records it."""
        from kerasgen.config import TrainConfig, from_dict
        from kerasgen.errors import ConfigError

        try:
            return from_dict(TrainConfig, self.read_config()["train"], "its 'train' section")
        except ConfigError as e:
            raise RunError(f"{self.config_path} is corrupted ({e})") from None

    def write_config(self, config):
        atomic_write(self.config_path, json.dumps(config, indent=1))

    @property
    def finished(self):
        return os.path.isfile(self.summary_path)

    def backup_state(self):
        """The backup's state.json (epoch, weights file, random states, callbacks' states),
        checked as a whole, or None without a backup: a file that is not what the trainer
        writes is one RunError, never a half-restored run."""
        path = self.backup_state_path
        if not os.path.isfile(path):
            return None
        state = _read_json(path, f"; delete {self.backup_dir} to restart the run")
        problem = None
        if not isinstance(state, dict) or set(state) != {"epoch", "weights", "random", "callbacks"}:
            problem = "not the trainer's backup state"
        elif type(state["epoch"]) is not int or state["epoch"] < 1:
            problem = f"epoch={state['epoch']!r} is not a number of epochs"
        elif not isinstance(state["weights"], str) or not re.fullmatch(r"epoch-\d+\.weights\.h5",
                                                                       state["weights"]):
            problem = f"weights={state['weights']!r} is not a backup weights file"
        elif not isinstance(state["random"], list) or not isinstance(state["callbacks"], list):
            problem = "its random and callback states are not lists"
        elif not os.path.isfile(os.path.join(self.backup_dir, state["weights"])):
            problem = f"its weights file {state['weights']} is missing"
        if problem:
            raise RunError(f"{path} is corrupted ({problem}); delete {self.backup_dir} to restart "
                           f"the run")
        return state

    def finished_epochs(self):
        """Epochs the run's backup holds (0 without one)."""
        state = self.backup_state()
        return state["epoch"] if state else 0

    def why_missing(self, which):
        """Why checkpoint `which` is not there, and what to do: for a missing-file message."""
        quoted = shlex.quote(self.path)
        if self.finished:
            return "it was deleted"
        epochs, total = self.finished_epochs(), self._configured_epochs()
        if epochs and epochs >= total:
            return (f"training finished, but its final save was interrupted: finish it with "
                    f"python -m kerasgen.train --resume {quoted}")
        if epochs:
            return (f"the run stopped after epoch {epochs} of {total}: continue it with python -m "
                    f"kerasgen.train --resume {quoted}" +
                    (", or use --checkpoint best" if which == "final" else ""))
        return "it has not finished an epoch yet"

    def _configured_epochs(self):
        try:
            return int(self.read_config()["train"]["epochs"])
        except (RunError, KeyError, TypeError, ValueError):
            return 0

    def read_summary(self):
        return _read_json(self.summary_path)

    def write_summary(self, summary):
        atomic_write(self.summary_path, json.dumps(summary, indent=1))

    def load_model(self, which="best"):
        """The 'best' or 'final' model of the run, uncompiled."""
        path = self.checkpoint_path(which)
        if not os.path.isfile(path):
            raise RunError(f"{path} does not exist ({self.why_missing(which)})")
        return self.load_keras(path)

    def load_keras(self, path):
        """A .keras file of this run, uncompiled; an unusable file is one RunError."""
        import keras

        import kerasgen.zoo  # noqa: F401  registers the models

        if not zipfile.is_zipfile(path):  # Keras would say "File not found"
            raise RunError(f"{path} cannot be loaded (it is truncated or is not a .keras file)")
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as e:  # Keras raises many kinds for a bad file; all mean "unusable"
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RunError(f"{path} cannot be loaded ({reason})") from None

    def _remove_temporaries(self):
        for folder, _, files in os.walk(self.path):
            for name in files:
                if ".tmp-" in name:
                    os.remove(os.path.join(folder, name))

    @classmethod
    def remove_abandoned(cls, pattern):
        """Removes the directories matching `pattern` whose training process is gone (no lock
        held): the scratch directories of killed workers."""
        import shutil

        for path in glob.glob(pattern):
            try:
                with cls(path).lock():
                    pass
            except (RunError, OSError):
                continue  # in use, or not ours to lock
            shutil.rmtree(path, ignore_errors=True)

    def trainer(self):
        """Who trains into this directory now ('process N'), or None when no one does; the
        directory is left as it is."""
        try:
            handle = open(self.join(self.LOCK))
        except OSError:
            return None  # never locked
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return handle.read().strip() or "another process"
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None

    @contextlib.contextmanager
    def lock(self):
        """Held while a process trains into this directory; a second one fails at once."""
        handle = open(self.join(self.LOCK), "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                raise RunError(f"{self.path} is being trained by {owner}; wait for it or "
                               f"choose another directory") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()}")
            handle.flush()
            self._remove_temporaries()  # of a process killed mid-write: no one else writes here
            yield self
        finally:
            handle.close()  # closing releases the lock (as does the process dying)
