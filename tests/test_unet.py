"""The unet family: tiny U-Nets on 8x8 digits, a few dozen Adam steps; exact where determinism is promised."""

import math
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import madloop
from madloop import snapshot
from madloop.errors import MadloopError
from madloop.models import unet
from madloop.models.diffusion import heun_sampler, karras_sigmas
from madloop.models.unet import UNet, init_weights
from madloop.registry import MODELS
from madloop.rng import Role, RunRNG
from madloop.samples import Samples
from madloop.threads import one_thread

R, N = 3, 64
TINY = UNet(channels=8, mults=(1, 2), batch=16, images=320, warmup=64, ema=64, steps=6, runs_per_pass=0)
_digits = load_digits()


def rng(role: str, runs: int = R) -> RunRNG:
    return RunRNG(5, range(runs), 1, role, total=runs)


def digits(runs: int = R, n: int = N) -> Samples:
    """Each run's own n digits (8x8, values in [0, 1]) drawn without replacement, with their labels."""
    index = rng("data", runs).permutations(len(_digits.images), n)
    return Samples((_digits.images / 16).astype(np.float32)[:, None][index], _digits.target[index])


@pytest.fixture(scope="module")
def fitted():
    return TINY.fit(digits(), rng("fit"))


def test_registered_and_options_round_trip():
    assert MODELS["unet"] is UNet
    spec = MODELS["unet"](mults=[1, 2, 2], attention=[4], conditional=False)  # JSON gives lists
    assert spec.mults == (1, 2, 2) and spec.attention == (4,) and spec == pickle.loads(pickle.dumps(spec))


@pytest.mark.parametrize("option, value", [
    ("channels", 2), ("mults", ()), ("blocks", 0), ("dropout", 1.0), ("label_dropout", -0.1), ("classes", 0),
    ("lr", 0.0), ("batch", 0), ("steps", 1), ("sigma_min", 0.0), ("sigma_data", 0.0), ("images", 8),
    ("ema", float("nan")), ("warmup", -1), ("runs_per_pass", -1), ("device", "tpu"), ("dtype", "float16"),
])
def test_bad_options_raise_naming_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        UNet(**{option: value})


def test_preconditioning_at_known_sigma(monkeypatch):
    """D = c_skip x + c_out F(c_in x, c_noise) with sigma_data = 0.5: at sigma = 0.5, c_skip = 1/2,
    c_out = c_in^-1 / 2 = 0.25 / sqrt(0.5), c_in = 1 / sqrt(0.5), c_noise = ln(0.5) / 4 (Karras et al., Table 1)."""
    seen = {}

    def network(self, weights, x, c_noise, y, keep, key=None):
        seen["x"], seen["c_noise"] = x, c_noise
        return torch.full_like(x, 3.0)

    monkeypatch.setattr(UNet, "network", network)
    x = torch.ones(1, 2, 1, 8, 8)
    d = UNet().denoiser({}, x, 0.5, None, None)
    torch.testing.assert_close(seen["x"], x / math.sqrt(0.5))
    torch.testing.assert_close(seen["c_noise"], torch.tensor(math.log(0.5) / 4))
    torch.testing.assert_close(d, 0.5 * x + 3.0 * 0.25 / math.sqrt(0.5))


def test_a_run_trained_in_a_batch_of_three_equals_that_run_trained_alone():
    """Same RunRNG rows -> the same run. Not bitwise: a grouped convolution (groups=3) and a plain one sum in
    different orders (float32 rounding, about 1e-7 relative per pass); after 20 Adam steps each weight tensor
    agrees to about 1e-6 of its largest entry (measured), checked at 1e-5; samples to 1e-5. One run at a time
    (runs_per_pass=1) is bitwise."""
    for spec in (replace(TINY, dropout=0.2), replace(TINY, dropout=0.2, runs_per_pass=1)):
        together = spec.fit(digits(), rng("fit"))
        x_together = together.sample(10, rng("synth"), 0.5).x
        for r in range(R):
            alone = spec.fit(digits().runs([r]), rng("fit").subset([r]))
            x_alone = alone.sample(10, rng("synth").subset([r]), 0.5).x
            for name, w in together.weights.items():
                if spec.runs_per_pass == 1:
                    assert torch.equal(w[r], alone.weights[name][0]), name
                else:
                    assert (w[r] - alone.weights[name][0]).abs().max() <= 1e-5 * w[r].abs().max(), name
            np.testing.assert_allclose(x_alone[0], x_together[r], atol=1e-5)


def test_dropout_masks_are_keyed_and_drop_the_asked_share():
    h = torch.ones(16, 3 * 8, 8, 8)
    out = unet.dropout(h, 0.3, torch.tensor([0, 7, 2**32 - 1]), 3).reshape(16, 3, -1)
    assert abs((out > 0).float().mean().item() - 0.7) < 0.01 and out.max().item() == pytest.approx(1 / 0.7)
    alone = unet.dropout(torch.ones(16, 8, 8, 8), 0.3, torch.tensor([7]), 1).reshape(16, 1, -1)
    assert torch.equal(alone[:, 0], out[:, 1]) and not torch.equal(out[:, 0], out[:, 1])


def test_loss_decreases_on_digits():
    """Each run's mean EDM loss on fixed draws (noise levels, noise, full labels): trained below initial."""
    spec, data = replace(TINY, images=640), digits()
    x = torch.as_tensor(data.x.reshape(R, N, -1) * 2 - 1)
    sigma, noise, _, _ = (torch.as_tensor(a) if a is not None else None for a in spec.draw(rng("eval"), N, 64))
    y, keep = torch.as_tensor(data.y), torch.ones(R, N)

    def loss(weights):
        with torch.no_grad():
            return spec.loss(weights, (1, 8, 8), x, y, sigma, noise, keep, None).numpy()

    before = loss(init_weights(spec, (1, 8, 8), rng("fit").child(Role.INIT), torch.device("cpu")))
    after = loss(spec.fit(data, rng("fit")).weights)
    assert (after < 0.8 * before).all(), (before, after)


def test_samples_shapes_range_and_balanced_labels(fitted):
    s = fitted.sample(25, rng("synth"))
    assert s.x.shape == (R, 25, 1, 8, 8) and s.x.dtype == np.float32 and s.y.shape == (R, 25)
    assert s.x.min() >= 0 and s.x.max() <= 1 and np.isfinite(s.x).all()
    for labels in s.y:  # 25 = 2 x 10 + 5: classes 0-4 three times, 5-9 twice, in a per-run order
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [3] * 5 + [2] * 5)
    assert not np.array_equal(s.y[0], s.y[1]) and not np.array_equal(s.x[0], s.x[1])


def test_lam_1_is_unguided_sampling_with_the_conditional_denoiser(fitted):
    """w = 1/lam - 1 = 0 exactly: the Heun sampler on D(x | y) alone, from the same noise and labels."""
    s = fitted.sample(12, rng("synth"))
    np.testing.assert_array_equal(s.x, fitted.sample(12, rng("synth"), 1.0).x)
    draws = rng("synth")
    y = torch.as_tensor((np.arange(12) % 10)[draws.permutations(12)])
    sigmas = karras_sigmas(TINY.steps, TINY.sigma_min, TINY.sigma_max, TINY.rho)
    x = torch.as_tensor(draws.standard_normal(12, 1, 8, 8, dtype=np.float32)) * float(sigmas[0])
    with torch.no_grad(), one_thread():  # as the family samples on a CPU
        x = heun_sampler(lambda x, sigma, i: TINY.denoiser(fitted.weights, x, sigma, y, torch.ones(R, 12)), x, sigmas)
    np.testing.assert_array_equal(s.y, y.numpy())
    np.testing.assert_array_equal(s.x, ((x + 1) / 2).clamp(0, 1).numpy())


def test_guidance_combines_the_conditional_and_null_denoisers(fitted):
    x, y = torch.randn(R, 5, 1, 8, 8), torch.randint(0, 10, (R, 5))
    with torch.no_grad():
        d_y = TINY.denoiser(fitted.weights, x, 1.0, y, torch.ones(R, 5))
        d_null = TINY.denoiser(fitted.weights, x, 1.0, y, torch.zeros(R, 5))
        torch.testing.assert_close(fitted.denoise(x, 1.0, y, 1.5), 2.5 * d_y - 1.5 * d_null, rtol=1e-4, atol=1e-5)


def test_lam_below_1_changes_the_samples_and_streams_are_keyed(fitted):
    a = fitted.sample(10, rng("synth"), 0.5)
    b = fitted.sample(10, rng("synth"))
    assert np.array_equal(a.y, b.y) and not np.allclose(a.x, b.x)
    np.testing.assert_array_equal(fitted.sample(10, rng("synth"), 0.5).x, a.x)  # same rng, same samples
    assert not np.array_equal(fitted.sample(10, rng("other")).x, b.x)
    again = TINY.fit(digits(), rng("fit"))
    np.testing.assert_array_equal(again.sample(10, rng("synth")).x, b.x)  # same streams, same model


def test_unconditional_lam_lowers_the_temperature():
    spec = replace(TINY, conditional=False, images=160)
    data = Samples(digits().x)  # no labels needed
    model = spec.fit(data, rng("fit"))
    full, cold = model.sample(20, rng("synth")), model.sample(20, rng("synth"), 0.3)
    assert full.y is None and cold.x.shape == full.x.shape and not np.allclose(full.x, cold.x)


def test_input_checks(fitted):
    data = digits()
    with pytest.raises(MadloopError, match="shape"):
        TINY.fit(Samples(data.x.reshape(R, N, 64)), rng("fit"))
    with pytest.raises(MadloopError, match="labelled"):
        TINY.fit(Samples(data.x), rng("fit"))
    with pytest.raises(MadloopError, match="classes=3"):
        replace(TINY, classes=3).fit(data, rng("fit"))
    with pytest.raises(MadloopError, match="runs"):
        TINY.fit(data, rng("fit", 2))
    with pytest.raises(MadloopError, match=r"\[0, 1\]"):
        TINY.fit(Samples(data.x * 16, data.y), rng("fit"))
    with pytest.raises(MadloopError, match="divisible by 16"):
        replace(TINY, mults=(1,) * 5).fit(data, rng("fit"))
    for lam in (0.0, 1.5, float("nan")):
        with pytest.raises(MadloopError, match="lam"):
            fitted.sample(5, rng("synth"), lam)
    with pytest.raises(MadloopError, match="runs"):
        fitted.sample(5, rng("synth", 1))


def test_attention_bfloat16_and_a_checkpoint_round_trip():
    spec = replace(TINY, attention=(4,), images=32, dtype="bfloat16", channels_last=True)
    model = spec.fit(digits(), rng("fit"))
    assert any(".attn." in name for name in model.weights)
    copy = snapshot.loads(snapshot.dumps(model))
    np.testing.assert_array_equal(copy.sample(6, rng("synth"), 0.7).x, model.sample(6, rng("synth"), 0.7).x)


def test_finetune_copies_and_guided_mixes(fitted):
    tuned = TINY.finetune(fitted, digits(), rng("tune"), 64)
    assert not torch.equal(tuned.weights["out.w"], fitted.weights["out.w"])
    assert TINY.fit(digits(), rng("fit")).weights["out.w"].equal(fitted.weights["out.w"])  # original unchanged
    base = fitted.sample(8, rng("synth"), 0.8).x
    np.testing.assert_array_equal(TINY.guided(fitted, tuned, 0.0).sample(8, rng("synth"), 0.8).x, base)
    assert not np.allclose(TINY.guided(fitted, tuned, 1.0).sample(8, rng("synth"), 0.8).x, base)
    with pytest.raises(ValueError, match="interval"):
        TINY.guided(fitted, tuned, 1.0, (0.5, 0.2))


def test_a_decoder_only_fine_tune_shares_the_encoder_and_samples_exactly_as_two_full_passes():
    from madloop.models.unet import GuidedUNet, is_decoder

    spec = UNet(images=64, batch=32, channels=8, steps=3, warmup=32, ema=32, runs_per_pass=1)
    rng = RunRNG(0, range(2), 1, "t")
    data = madloop.DATA["digits"]().sample(40, rng.child("real"))
    base = spec.fit(data, rng.child("fit"))
    aux = spec.finetune(base, data, rng.child("tune"), 64, decoder_only=True)
    encoder = [k for k in base.weights if not is_decoder(k)]
    assert encoder and all(aux.weights[k] is base.weights[k] for k in encoder)  # the same tensors
    assert any(not torch.equal(aux.weights[k], base.weights[k]) for k in base.weights if is_decoder(k))
    shared = spec.guided(base, aux, 1.5)
    assert shared.shared_encoder and not spec.guided(base, spec.finetune(base, data, rng.child("t"), 64), 1.5).shared_encoder
    for lam in (1.0, 0.6):  # with and without classifier-free guidance inside each denoiser
        one_pass = shared.sample(12, rng.child("s"), lam).x
        two_passes = GuidedUNet(base, aux, 1.5).sample(12, rng.child("s"), lam).x
        assert np.array_equal(one_pass, two_passes)
