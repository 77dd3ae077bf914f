"""The OccWorld-compatible VQ-VAE: exact state dict, checkpoint loading, shapes, gradients."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from occvla_ros.constants import NUM_OCC_CLASSES, OCC_GRID_SHAPE
from occvla_ros.errors import CheckpointError, ConfigError
from occvla_ros.model.losses import _jaccard_increments, lovasz_softmax
from occvla_ros.model.vqvae import (
    SCENE_TOKENIZER_CONFIG,
    OccupancyVQVAE,
    ReconstructionWeights,
    VQVAEConfig,
    balanced_class_weights,
    load_occworld_vqvae,
    load_scene_tokenizer,
    reconstruction_loss,
    save_scene_tokenizer,
)

DATA = Path(__file__).parent / "data"
REFERENCE_COPY = DATA / "occworld_vqvae_state_dict.txt"
SHARED_REFERENCE = (
    Path(__file__).resolve().parents[2].parent / "shared/reference/occworld-vqvae-state-dict.txt"
)
OCCWORLD_PARAMETERS = 14_168_272
GOLDEN = DATA / "vqvae_golden.safetensors"
# A very small tokenizer (every module kind, two levels) for the golden-output file.
GOLDEN_CONFIG = VQVAEConfig(
    class_embed_dim=4,
    num_heights=4,
    spatial_size=(6, 6),
    base_channels=4,
    channel_multipliers=(1, 2),
    attention_levels=(1,),
    norm_groups=2,
    latent_channels=4,
    codebook_size=8,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tensors are small: one thread is about as fast unloaded and, on a busy 2-core
    machine, avoids OpenMP stalls measured at 60x (42 s instead of 0.7 s for 10 steps)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _read_reference(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    entries = []
    for line in path.read_text().splitlines():
        name, shape = line.split(" ", 1)
        entries.append((name, tuple(int(d) for d in re.findall(r"\d+", shape))))
    return entries


@pytest.fixture(scope="module")
def tiny_vqvae() -> OccupancyVQVAE:
    torch.manual_seed(0)
    return OccupancyVQVAE(VQVAEConfig.tiny())


def test_default_state_dict_is_occworlds_exactly():
    with torch.device("meta"):
        model = OccupancyVQVAE()
    reference = _read_reference(REFERENCE_COPY)
    assert len(reference) == 222
    assert [(name, tuple(t.shape)) for name, t in model.state_dict().items()] == reference
    assert sum(p.numel() for p in model.parameters()) == OCCWORLD_PARAMETERS
    # The one buffer counts code use for dead-code restarts while training; not saved.
    assert [name for name, _ in model.named_buffers()] == ["vqvae.code_counts"]


def test_reference_copy_matches_the_shared_reference():
    if not SHARED_REFERENCE.is_file():
        pytest.skip(f"{SHARED_REFERENCE} is not on this machine; the committed copy is used")
    assert _read_reference(SHARED_REFERENCE) == _read_reference(REFERENCE_COPY)


def test_tiny_keeps_the_structure_and_output_grid(tiny_vqvae):
    with torch.device("meta"):
        default_names = list(OccupancyVQVAE().state_dict())
    assert list(tiny_vqvae.state_dict()) == default_names
    occupancy = torch.randint(0, NUM_OCC_CLASSES, (2, *OCC_GRID_SHAPE))
    with torch.no_grad():
        z = tiny_vqvae.encode(occupancy)
        quantized = tiny_vqvae.quantize(z)
        logits = tiny_vqvae.decode_latents(quantized.codes)
    latent = tiny_vqvae.config.latent_channels
    assert z.shape == (2, latent, 50, 50)
    assert quantized.codes.shape == (2, latent, 50, 50)
    assert quantized.indices.shape == (2, 50, 50)
    assert int(quantized.indices.max()) < tiny_vqvae.config.codebook_size
    # The forward values of the straight-through codes are exactly the chosen codebook rows.
    chosen = tiny_vqvae.vqvae.embedding.weight[quantized.indices].permute(0, 3, 1, 2)
    torch.testing.assert_close(quantized.codes, chosen)
    assert logits.shape == (2, *OCC_GRID_SHAPE, NUM_OCC_CLASSES)
    assert torch.isfinite(logits).all()


def test_odd_grids_decode_back_to_the_recorded_shapes():
    config = VQVAEConfig(**{**VQVAEConfig.tiny().__dict__, "spatial_size": (25, 27)})
    assert config.level_shapes == ((25, 27), (12, 13), (6, 6))
    model = OccupancyVQVAE(config)
    with torch.no_grad():
        output = model(torch.randint(0, NUM_OCC_CLASSES, (1, 25, 27, 16)))
    assert output.logits.shape == (1, 25, 27, 16, NUM_OCC_CLASSES)


def test_logits_are_dot_products_with_the_tied_class_embeddings(tiny_vqvae):
    codes = torch.randn(1, tiny_vqvae.config.latent_channels, 50, 50)
    with torch.no_grad():
        logits = tiny_vqvae.decode_latents(codes)
        decoded = tiny_vqvae.decoder(tiny_vqvae.vqvae.post_quant_conv(codes))  # [1, 128, X, Y]
    # Channel = height * 8 + embedding dimension; check one voxel by hand.
    x, y, height = 17, 123, 5
    feature = decoded[0, height * 8 : (height + 1) * 8, x, y]
    torch.testing.assert_close(logits[0, x, y, height], tiny_vqvae.class_embeds.weight @ feature)


def test_encoder_reads_heights_times_embedding_as_channels(tiny_vqvae):
    occupancy = torch.randint(0, NUM_OCC_CLASSES, (1, *OCC_GRID_SHAPE))
    captured = []
    handle = tiny_vqvae.encoder.conv_in.register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0])
    )
    with torch.no_grad():
        tiny_vqvae.encode(occupancy)
    handle.remove()
    channels = captured[0]  # [1, 128, 200, 200]
    x, y, height = 150, 7, 11
    expected = tiny_vqvae.class_embeds.weight[occupancy[0, x, y, height]]  # [8]
    torch.testing.assert_close(channels[0, height * 8 : (height + 1) * 8, x, y], expected)


def test_straight_through_gradient_reaches_the_encoder(tiny_vqvae):
    z = torch.randn(1, tiny_vqvae.config.latent_channels, 50, 50, requires_grad=True)
    quantized = tiny_vqvae.quantize(z)
    upstream = torch.randn_like(quantized.codes)
    (quantized.codes * upstream).sum().backward()
    # d codes / d (quant_conv output) is the identity: z.grad is quant_conv's transpose applied.
    weight = tiny_vqvae.vqvae.quant_conv.weight[:, :, 0, 0]  # [out, in]
    expected = torch.einsum("oi,bohw->bihw", weight, upstream)
    torch.testing.assert_close(z.grad, expected)
    tiny_vqvae.zero_grad()


def test_vq_loss_trains_the_codebook_and_commits_the_encoder(tiny_vqvae):
    z = torch.randn(1, tiny_vqvae.config.latent_channels, 50, 50, requires_grad=True)
    quantized = tiny_vqvae.quantize(z)
    assert quantized.loss > 0
    quantized.loss.backward()
    assert tiny_vqvae.vqvae.embedding.weight.grad.abs().sum() > 0
    assert z.grad.abs().sum() > 0
    tiny_vqvae.zero_grad()


def _occworld_checkpoint(model: OccupancyVQVAE, prefix: str) -> dict[str, torch.Tensor]:
    """A full OccWorld-style model state dict: the tokenizer under ``prefix`` + world model."""
    state = {f"{prefix}{name}": torch.randn_like(t) for name, t in model.state_dict().items()}
    state["module.transformer.layers.0.weight"] = torch.randn(4, 4)
    return state


@pytest.mark.parametrize("prefix", ["vae.", "module.vae."])
def test_occworld_checkpoint_loads_and_round_trips(tmp_path, prefix):
    torch.manual_seed(1)
    source = OccupancyVQVAE(VQVAEConfig.tiny())
    state = _occworld_checkpoint(source, prefix)
    path = tmp_path / "occworld.pth"
    torch.save({"state_dict": state, "epoch": 12}, path)

    target = load_occworld_vqvae(OccupancyVQVAE(VQVAEConfig.tiny()), path)
    for name, tensor in target.state_dict().items():
        torch.testing.assert_close(tensor, state[prefix + name], rtol=0, atol=0)

    # Numerically the same model: same logits from the same labels.
    load_occworld_vqvae(source, {name: t for name, t in state.items() if "vae." in name})
    occupancy = torch.randint(0, NUM_OCC_CLASSES, (1, *OCC_GRID_SHAPE))
    with torch.no_grad():
        torch.testing.assert_close(target(occupancy).logits, source(occupancy).logits)


def test_safetensors_checkpoint_without_prefix_loads(tmp_path, tiny_vqvae):
    path = tmp_path / "tokenizer.safetensors"
    save_file({name: t.contiguous() for name, t in tiny_vqvae.state_dict().items()}, str(path))
    target = load_occworld_vqvae(OccupancyVQVAE(VQVAEConfig.tiny()), path)
    for name, tensor in target.state_dict().items():
        assert torch.equal(tensor, tiny_vqvae.state_dict()[name])


def test_mismatched_checkpoints_raise_naming_the_keys(tiny_vqvae):
    good = {f"vae.{name}": t.clone() for name, t in tiny_vqvae.state_dict().items()}
    target = OccupancyVQVAE(VQVAEConfig.tiny())
    before = {name: t.clone() for name, t in target.state_dict().items()}

    missing = dict(good)
    del missing["vae.decoder.conv_out.bias"]
    with pytest.raises(CheckpointError, match=r"missing: decoder\.conv_out\.bias"):
        load_occworld_vqvae(target, missing)

    extra = {**good, "vae.decoder.extra_head.weight": torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"unexpected: decoder\.extra_head\.weight"):
        load_occworld_vqvae(target, extra)

    misshaped = {**good, "vae.class_embeds.weight": torch.zeros(17, 8)}
    with pytest.raises(CheckpointError, match=r"class_embeds\.weight \(17, 8\) != \(18, 8\)"):
        load_occworld_vqvae(target, misshaped)

    non_finite = dict(good)
    non_finite["vae.vqvae.embedding.weight"] = good["vae.vqvae.embedding.weight"].clone()
    non_finite["vae.vqvae.embedding.weight"][3, 4] = float("nan")
    with pytest.raises(CheckpointError, match=r"non-finite values in vqvae\.embedding\.weight"):
        load_occworld_vqvae(target, non_finite)

    # The real (64-channel) checkpoint into the tiny model: every conv is mis-shaped.
    with torch.device("meta"):
        real_state = OccupancyVQVAE().state_dict()
    with pytest.raises(CheckpointError, match=r"mis-shaped .*encoder\.conv_in\.weight"):
        load_occworld_vqvae(target, real_state)

    for name, tensor in target.state_dict().items():  # nothing was partially loaded
        assert torch.equal(tensor, before[name])


def test_unreadable_checkpoint_files_raise_naming_the_file(tmp_path):
    model = OccupancyVQVAE(VQVAEConfig.tiny())
    with pytest.raises(CheckpointError, match=r"not found: .*absent\.pth"):
        load_occworld_vqvae(model, tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00not a safetensors file")
    with pytest.raises(CheckpointError, match=r"corrupt\.safetensors"):
        load_occworld_vqvae(model, corrupt)
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": {"x": object()}}, pickled)  # needs full unpickling: refused
    with pytest.raises(CheckpointError, match=r"pickled\.pth"):
        load_occworld_vqvae(model, pickled)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"norm_groups": 24}, "norm_groups=24"),
        ({"attention_levels": (3,)}, r"attention_levels \(3,\)"),
        ({"latent_channels": 0}, "latent_channels must be a positive integer, got 0"),
        ({"spatial_size": (3, 200)}, r"spatial_size .*\(3, 200\)"),
        ({"norm_eps": 0.0}, "norm_eps must be > 0, got 0.0"),
    ],
)
def test_config_errors_name_the_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        VQVAEConfig(**overrides)


def test_config_accepts_lists_from_yaml():
    config = VQVAEConfig(channel_multipliers=[1, 2, 4], spatial_size=[200, 200])
    assert config == VQVAEConfig()


def test_wrong_label_shapes_are_rejected(tiny_vqvae):
    with pytest.raises(ConfigError, match=r"\[B, 200, 200, 16\], got \[1, 200, 200\]"):
        tiny_vqvae.encode(torch.zeros(1, 200, 200, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"latents must have shape \[B, 32, 50, 50\]"):
        tiny_vqvae.decode_latents(torch.zeros(1, 32, 25, 25))


def test_reconstruction_loss_trains_a_tokenizer():
    torch.manual_seed(0)
    config = VQVAEConfig(**{**VQVAEConfig.tiny().__dict__, "spatial_size": (24, 24)})
    model = OccupancyVQVAE(config)
    occupancy = torch.randint(0, NUM_OCC_CLASSES, (1, 24, 24, 16))
    occupancy[..., 8:] = NUM_OCC_CLASSES - 1  # structure to learn: free above height 8
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(12):
        loss, terms = model.reconstruction_loss(occupancy)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(terms)
    assert set(history[0]) == {"vq_ce", "vq_lovasz", "vq_codebook"}
    assert history[-1]["vq_ce"] < 0.7 * history[0]["vq_ce"]
    assert history[-1]["vq_lovasz"] < history[0]["vq_lovasz"]


def test_reconstruction_loss_weights_and_terms():
    torch.manual_seed(0)
    config = VQVAEConfig(**{**VQVAEConfig.tiny().__dict__, "spatial_size": (8, 8)})
    model = OccupancyVQVAE(config)
    occupancy = torch.randint(0, NUM_OCC_CLASSES, (2, 8, 8, 16))
    output = model(occupancy)
    full, terms = reconstruction_loss(output, occupancy)
    assert set(terms) == {"vq_ce", "vq_lovasz", "vq_codebook"}
    expected = 10 * terms["vq_ce"] + terms["vq_lovasz"] + terms["vq_codebook"]  # OccWorld's
    assert float(full.detach()) == pytest.approx(expected, rel=1e-5)
    ce_only, terms = reconstruction_loss(output, occupancy, ReconstructionWeights(lovasz=0.0))
    assert float(ce_only.detach()) == pytest.approx(10 * terms["vq_ce"] + terms["vq_codebook"])
    assert set(terms) == {"vq_ce", "vq_codebook"}
    with pytest.raises(ConfigError, match="ce or lovasz > 0"):
        ReconstructionWeights(ce=0.0, lovasz=0.0)


def test_class_weights_weight_the_reconstruction_cross_entropy():
    torch.manual_seed(0)
    config = VQVAEConfig(**{**VQVAEConfig.tiny().__dict__, "spatial_size": (8, 8)})
    occupancy = torch.randint(0, NUM_OCC_CLASSES, (2, 8, 8, 16))
    output = OccupancyVQVAE(config)(occupancy)
    weights = torch.rand(NUM_OCC_CLASSES) + 0.1
    _, terms = reconstruction_loss(output, occupancy, class_weights=weights)
    expected = torch.nn.functional.cross_entropy(
        output.logits.reshape(-1, NUM_OCC_CLASSES), occupancy.reshape(-1), weight=weights
    )
    assert terms["vq_ce"] == pytest.approx(float(expected.detach()), rel=1e-5)
    _, unweighted = reconstruction_loss(output, occupancy)
    assert terms["vq_ce"] != pytest.approx(unweighted["vq_ce"], rel=1e-3)


def test_balanced_class_weights_favour_rare_classes_within_a_bound():
    counts = torch.tensor([0, 10, 1_000, 100_000, 900_000])
    weights = balanced_class_weights(counts)
    assert weights.tolist() == sorted(weights.tolist(), reverse=True)  # rarer, heavier
    frequency = counts / counts.sum()
    assert float((weights * frequency).sum()) == pytest.approx(1.0, rel=1e-5)  # mean per voxel
    # ENet's bound: the rarest class outweighs the commonest by ln(1.02 + f_max) / ln(1.02).
    assert float(weights[0] / weights[-1]) == pytest.approx(
        float(torch.log(1.02 + frequency[-1]) / torch.log(torch.tensor(1.02))), rel=1e-4
    )
    for bad in (torch.zeros(5), torch.tensor([1.0, -1.0]), torch.ones(2, 2)):
        with pytest.raises(ConfigError, match="class counts"):
            balanced_class_weights(bad)


def test_dead_codes_restart_onto_the_batch_latents():
    torch.manual_seed(0)
    config = VQVAEConfig(**{**VQVAEConfig.tiny().__dict__, "spatial_size": (8, 8)})
    quantizer = OccupancyVQVAE(config).vqvae
    latents = torch.randn(2, config.latent_channels, 2, 2) * 5  # 8 cells, far from the codes
    quantizer.eval()
    quantizer.dead_code_window = 1
    quantizer.snap_to_codebook(latents)
    assert int(quantizer.code_counts.sum()) == 0  # evaluation neither counts nor restarts
    quantizer.train()
    used = quantizer.snap_to_codebook(latents).indices.unique()
    assert int(quantizer.code_counts.sum()) == 8
    before = quantizer.embedding.weight.detach().clone()
    quantizer.snap_to_codebook(latents)  # the window is full: unused codes move
    after = quantizer.embedding.weight.detach()
    moved = [k for k in range(config.codebook_size) if not torch.equal(before[k], after[k])]
    assert set(moved) == set(range(config.codebook_size)) - set(used.tolist())
    cells = latents.permute(0, 2, 3, 1).reshape(-1, config.latent_channels)
    for code in moved:  # each one now sits on a latent cell of the batch
        assert torch.isclose(cells, after[code]).all(dim=1).any()
    assert "vqvae.code_counts" not in OccupancyVQVAE(config).state_dict()


def _sorted_lovasz(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The paper's definition, literally: sort every present class's errors, dot increments."""
    per_class = []
    for class_index in torch.unique(labels).tolist():
        foreground = (labels == class_index).to(probabilities.dtype)
        errors = (foreground - probabilities[:, class_index]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        per_class.append(errors_sorted @ _jaccard_increments(foreground[order]))
    return torch.stack(per_class).mean()


@pytest.mark.parametrize("confidence", [0.0, 6.0])  # untrained, and mostly right
def test_lovasz_equals_the_sorted_definition_in_value_and_gradient(confidence):
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 6, (4000,), generator=generator)
    labels[:2000] = 5  # one dominant class, as free space is
    logits = torch.randn(4000, 6, generator=generator, dtype=torch.float64)
    logits += confidence * torch.nn.functional.one_hot(labels, 6)
    gradients = []
    for loss_function in (lovasz_softmax, _sorted_lovasz):
        leaf = logits.clone().requires_grad_(True)
        loss = loss_function(leaf.softmax(dim=-1), labels)
        loss.backward()
        gradients.append((loss.detach(), leaf.grad))
    torch.testing.assert_close(gradients[0][0], gradients[1][0])
    torch.testing.assert_close(gradients[0][1], gradients[1][1])


def test_scene_tokenizer_directory_round_trip(tmp_path):
    torch.manual_seed(0)
    source = OccupancyVQVAE(VQVAEConfig.tiny())
    save_scene_tokenizer(tmp_path / "tok", source.config, source.state_dict(), {"preset": "tiny"})
    loaded = load_scene_tokenizer(tmp_path / "tok")
    assert loaded.config == source.config
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    # Into an existing model of the same configuration, in place.
    target = OccupancyVQVAE(VQVAEConfig.tiny())
    assert load_scene_tokenizer(tmp_path / "tok", target) is target
    assert torch.equal(target.class_embeds.weight, source.class_embeds.weight)


def test_scene_tokenizer_of_another_configuration_is_refused(tmp_path):
    other = VQVAEConfig(**{**VQVAEConfig.tiny().__dict__, "codebook_size": 32})
    save_scene_tokenizer(tmp_path / "tok", other, OccupancyVQVAE(other).state_dict())
    target = OccupancyVQVAE(VQVAEConfig.tiny())
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"codebook_size 32 \(model: 512\)"):
        load_scene_tokenizer(tmp_path / "tok", target)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    with pytest.raises(CheckpointError, match=f"{SCENE_TOKENIZER_CONFIG} is missing"):
        load_scene_tokenizer(tmp_path)
    (tmp_path / "tok" / SCENE_TOKENIZER_CONFIG).write_text("format_version: 7\n")
    with pytest.raises(CheckpointError, match="unsupported scene tokenizer format"):
        load_scene_tokenizer(tmp_path / "tok")


def _golden_inputs() -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.randint(0, NUM_OCC_CLASSES, (2, 6, 6, 4), generator=generator)


def test_golden_output_has_not_drifted():
    stored = load_file(str(GOLDEN))
    model = OccupancyVQVAE(GOLDEN_CONFIG)
    load_occworld_vqvae(model, {k[len("model.") :]: v for k, v in stored.items() if "model." in k})
    with torch.no_grad():
        output = model(_golden_inputs())
    torch.testing.assert_close(output.logits, stored["logits"], rtol=1e-4, atol=1e-5)
    assert torch.equal(output.indices, stored["indices"])
    torch.testing.assert_close(output.vq_loss, stored["vq_loss"], rtol=1e-4, atol=1e-6)


def write_golden() -> None:
    """Regenerate the golden file (only after an intended numerical change, with review)."""
    torch.manual_seed(0)
    model = OccupancyVQVAE(GOLDEN_CONFIG)
    with torch.no_grad():
        for parameter in model.parameters():  # spread the weights: GroupNorm affines included
            parameter.add_(0.1 * torch.randn_like(parameter))
        output = model(_golden_inputs())
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors.update(logits=output.logits, indices=output.indices, vq_loss=output.vq_loss)
    save_file(tensors, str(GOLDEN))


if __name__ == "__main__":
    write_golden()
