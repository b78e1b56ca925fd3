"""Model specs of `continuum evaluate`: the attribution variants and which models are seeded."""

from __future__ import annotations

import pytest

from continuum.errors import UserError
from learner.hope.config import HopeConfig
from learner.models import hope_config, is_seeded, parse_spec, pretrain_key


def test_attribution_variants_switch_off_one_kind_of_online_learning_each():
    base = HopeConfig()
    assert parse_spec("hope[no-writes]") == ("hope", {"no-writes": "1"})
    assert parse_spec("hope[no-cms-online]") == ("hope", {"no-cms-online": "1"})
    nw = hope_config("hope[no-writes]", base)
    assert nw.write_memories is False and nw.learn_cms is True
    nc = hope_config("hope[no-cms-online]", base)
    assert nc.write_memories is True and nc.learn_cms is False
    assert nw.with_(write_memories=True) == base and nc.with_(learn_cms=True) == base  # nothing else changed
    # both run hope's pre-trained net (they differ only online), as hope-frozen does
    key = pretrain_key(base)
    assert pretrain_key(nw) == pretrain_key(nc) == pretrain_key(hope_config("hope-frozen", base)) == key
    with pytest.raises(UserError, match="no-writes, no-cms-online"):
        hope_config("hope[no-write]", base)


def test_learning_models_are_seeded_classical_ones_are_not():
    for spec in ("hope", "hope-frozen", "hope[no-writes]", "gru_online", "transformer_online", "gru_sliding"):
        assert is_seeded(spec), spec
    for spec in ("ewma", "har", "garch", "river_linear"):
        assert not is_seeded(spec), spec


def test_spread_is_the_sample_std_over_seeds_and_skips_missing_values():
    from learner.evaluation.harness import spread

    assert spread([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "values": [1.0, 2.0, 3.0]}
    assert spread([0.5]) == {"mean": 0.5, "std": 0.0, "values": [0.5]}
    assert spread([None, 1.0, 3.0])["mean"] == 2.0
    assert spread([None, None]) == {"mean": None, "std": None, "values": [None, None]}


def test_a_pretrained_net_carries_the_deployed_config_whichever_spec_asked_first():
    """`evaluate` saves the cache's nets for `learn`/`demo`: a net first asked for by hope-frozen (or a calibration
    variant) must still learn online and calibrate as deployed when loaded from its file."""
    from learner.models import deployed_config
    from learner.pipeline import PretrainCache
    from learner.pretrain import PretrainConfig
    from tests.learner.synthetic import small_cfg, synthetic_panel

    fp = synthetic_panel(T=160, B=2, F=6, seed=1)
    base = small_cfg(ret_calib=True)
    cache = PretrainCache(fp, 140, PretrainConfig(steps=1, seq_len=16, batch=2, carry=1), progress=False)
    frozen = hope_config("hope-frozen", base)
    assert not frozen.write_memories and not frozen.ret_calib
    net = cache(frozen)
    assert net.cfg == deployed_config(frozen) and net.cfg.write_memories and net.cfg.learn_cms and net.cfg.ret_calib
    assert len(cache.nets) == 1 and cache(hope_config("hope[ret-calib=720]", base)).cfg == net.cfg  # one net
