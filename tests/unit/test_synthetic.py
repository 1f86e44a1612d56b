"""The hard synthetic scene: what makes it hard is there, and the easy demo is unchanged by its option."""

import numpy as np
import pytest

from lcup.synthetic import BUILT, CROP, FOREST, GRASS, TRUTH_TO_CGLS, WATER, SceneSpec, coarse_map, make_landscape


def _scene(difficulty: str):
    spec = SceneSpec(size=(320, 320), difficulty=difficulty)
    land = make_landscape(spec, np.random.default_rng(spec.seed))
    cells = coarse_map(land.truth, 10, spec.label_noise, np.random.default_rng([spec.seed, 10_000]),
                       systematic=difficulty == "hard")
    inv = np.zeros(256, np.uint8)
    for k, v in TRUTH_TO_CGLS.items():
        inv[v] = k
    return land, np.kron(inv[cells], np.ones((10, 10), np.uint8))


def test_hard_scene_has_small_features_close_classes_and_systematic_coarse_errors():
    easy, easy_coarse = _scene("easy")
    hard, hard_coarse = _scene("hard")
    # same parcels, forests, towns: the hard scene adds to the easy one
    np.testing.assert_array_equal(easy.objects, hard.objects)
    changed = easy.truth != hard.truth
    assert 0.02 < changed.mean() < 0.2
    # hedges (forest on field edges), ponds and farm buildings, all within former fields
    assert np.isin(easy.truth[changed], (GRASS, CROP)).all()
    assert set(np.unique(hard.truth[changed])) == {FOREST, WATER, BUILT}
    # intensive grassland (four deep cuts) and mixed pixels only in the hard scene
    assert "intensive" in hard.params and 0.3 < hard.params["intensive"].mean() < 0.5 and "intensive" not in easy.params
    # the coarse map: misregistered by half a cell and grassland under-mapped over part of the scene
    oa_easy = (easy_coarse == easy.truth).mean()
    oa_hard = (hard_coarse == hard.truth).mean()
    assert oa_hard < oa_easy - 0.1
    grass_share = lambda t, c: ((c == GRASS) & (t > 0)).sum() / (t == GRASS).sum()  # noqa: E731
    assert grass_share(hard.truth, hard_coarse) < 0.8 * grass_share(easy.truth, easy_coarse)


def test_easy_scene_is_the_default_and_difficulty_is_checked():
    assert SceneSpec().difficulty == "easy"
    with pytest.raises(ValueError, match="difficulty"):
        SceneSpec(difficulty="extreme")
