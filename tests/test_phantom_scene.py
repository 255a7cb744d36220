"""The phantom's reflectivity map: walls fade into the tissue around the heart; the cavity edge stays exact."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from echodfkd.data.phantom.anatomy import build_heart, sample_anatomy
from echodfkd.data.phantom.motion import sample_cycle
from echodfkd.data.phantom.raster import fill_polygons
from echodfkd.data.phantom.scene import draw_scene, sample_echogenicity


def _scene(edge_blur: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    rng = np.random.default_rng(3)
    cycle = sample_cycle(rng, 8, 50.0, 70.0)
    heart = build_heart(sample_anatomy(rng, 0.55), cycle.m, cycle.mitral, cycle.tricuspid, 112)
    levels = replace(sample_echogenicity(rng), myocardium=120, septum=120, rv_wall=120, atrial_wall=120,
                     pericardium=120, blood=3, edge_blur=edge_blur)
    background = np.full((112, 112), 40, np.uint8)
    return draw_scene(heart, levels, background), fill_polygons(heart.lv, 112, 112), levels.blood, 40


def test_walls_have_a_soft_outer_border_and_an_exact_cavity():
    sharp, lv, blood, tissue = _scene(0.0)
    soft, lv2, _, _ = _scene(2.0)
    assert np.array_equal(lv, lv2)
    between = lambda r: int(((r > tissue + 10) & (r < 110)).sum())  # noqa: E731 - levels neither wall nor tissue
    # Drawn bands jump from wall to tissue in one pixel (what lies between is valves, strands and
    # anti-aliased cavity edges); tissue fades over several.
    assert between(soft) > 2 * between(sharp)
    # The walls stay brighter than the surround, and the surround far from the heart is untouched.
    walls = (sharp == 120)
    assert soft[walls].mean() > (120 + tissue) / 2
    assert soft[:, 0, 0].tolist() == sharp[:, 0, 0].tolist() == [tissue] * len(soft)
    # The LV cavity (what the ground-truth mask covers: blood, papillary muscles, trabeculae) is drawn over
    # the walls unchanged, so its edge stays where the mask's is.
    inner = np.stack([ndimage.binary_erosion(m.astype(bool)) for m in lv])
    assert np.array_equal(soft[inner], sharp[inner]) and np.median(soft[inner]) <= blood + 1
