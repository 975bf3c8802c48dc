"""The user's clock: where a run's time went, in its summary; the final scores taken from the
last epoch, which already computed them, instead of a second pass."""
import pytest

from conftest import MODELS
from kerasgen import registry
from kerasgen.family import final_scores
from kerasgen.text import run_validation_scores

PARTS = ("startup_s", "train_s", "validation_s", "between_epochs_s", "save_and_scores_s")


def test_a_run_says_where_its_time_went(tiny_run):
    timings = tiny_run("gru").read_summary()["timings"]
    assert set(timings) == {*PARTS, "total_s"}
    assert timings["startup_s"] > 0 and timings["train_s"] > 0 and timings["validation_s"] > 0
    assert sum(timings[part] for part in PARTS) <= timings["total_s"] + 0.05


def test_the_summary_scores_are_the_final_models_own(tiny_run):
    run = tiny_run("gru")
    summary = run.read_summary()
    fresh = run_validation_scores(run.load_model("final"), run.train_config())
    for key in ("val_loss", "bits_per_byte", "perplexity"):
        assert abs(summary[key] - fresh[key]) < 1e-5, key


def test_final_scores_are_computed_only_when_no_epoch_ran_here():
    computed = []

    def compute():
        computed.append(True)
        return {"loss": 2.0}

    assert final_scores({"loss": 3.0, "val_loss": 1.0}, ("loss",), compute) == {"loss": 1.0}
    assert not computed
    assert final_scores(None, ("loss",), compute) == {"loss": 2.0} and computed


@pytest.mark.parametrize("family", sorted({registry.get(n).family.name: n for n in MODELS}.items()))
def test_the_trainers_pipelines_run_without_the_autotuning_thread(family):
    """Whose sleep an iterator's destructor waited out: the end of fit stalled for up to 57 s."""
    from kerasgen.bench import common

    _, data, _ = common.family_data(family[1], {})
    for dataset in (data.train, data.validation):
        assert dataset is None or dataset.options().autotune.enabled is False
