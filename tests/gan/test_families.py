"""The model-family table is the one home of a family's facts: every entry's builder and step
exist, its metrics head its step's output, and its spec rules reach the user as exit 2."""
from __future__ import annotations

import inspect

from gan import families
from gan.models import builders
from gan.training import steps
from jobs.core import exitcodes
from jobs.sweep import SUMMARY_COLUMNS
from tests.conftest import ROOT, run_cli


def test_every_family_names_a_builder_and_a_step_that_exist():
    for name, fam in families.FAMILIES.items():
        assert inspect.isfunction(getattr(builders, fam.builder, None)), name
        assert inspect.isfunction(steps.STEP_BUILDERS.get(fam.step)), name
        assert fam.condition in ("label", "none", "attributes"), name
        for consumer, names in families.READS.items():  # the guard, ADA, the sweep summary...
            assert set(names) <= set(fam.metrics), (name, consumer)
        # the adversarial five head every family's metrics; its own follow them
        assert fam.metrics[:5] == families.ADVERSARIAL_METRICS, name
        assert fam.metrics == families.ADVERSARIAL_METRICS + fam.own_metrics, name
    assert families.FAMILIES["aeacgan"].own_metrics == ("d_attr", "g_attr", "ae_mae")
    assert SUMMARY_COLUMNS[-5:] == list(families.READS["sweep_summary"])


def test_consumers_read_metrics_by_the_names_the_table_declares():
    """No consumer slices the metrics by position or spells a name the table does not hold."""
    for path in ("gan/training/loop.py", "gan/training/steps.py", "jobs/sweep.py"):
        text = (ROOT / path).read_text()
        assert "metric_names[" not in text and "metrics[:" not in text, path
    train = (ROOT / "gan/training/loop.py").read_text()
    for consumer in ("guard", "progress", "ada"):
        assert f'READS["{consumer}"]' in train, consumer


def test_family_rules_are_reported_with_file_field_and_choices(write_spec, tmp_path):
    assert families.problems("cgan", "normal") == []
    assert "needs unit_uniform" in families.problems("aeacgan", "normal")[0]
    assert "did you mean 'dcgan'" in families.problems("dcgna", "normal")[0]
    spec = write_spec(f"""\
        kind: train
        name: t
        train:
          data: {tmp_path / 'x.h5'}
          run_dir: {tmp_path / 'run'}
          model: {{name: aeacgan}}
    """)
    proc = run_cli("validate", str(spec))
    assert proc.returncode == exitcodes.INVALID_SPEC
    assert f"{spec}: train.latent.distribution: train.model.name aeacgan needs unit_uniform" \
        in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("plan", str(ROOT / "jobs/examples/train_cgan_digits.yaml"),
                   "--set", "train.model.name=stylegan9")
    assert proc.returncode == exitcodes.INVALID_SPEC and "unknown model 'stylegan9'" in proc.stderr
