"""B-mode image formation: sector fan, speckle that moves with the tissue, attenuation, blur, artefacts.

Speckle is generated in beam (polar) coordinates, so its grains are short along the beam, and their
lateral size grows with depth once scan-converted onto the image grid. The speckle and the tissue's
heterogeneity are carried by the tissue motion (flow.py), and a small pool of speckle fields is
cross-faded over time (preserving the Rayleigh statistics) so it also decorrelates slowly, faster while
the heart moves; its contrast is lowered as scanners' compounding does. Interfaces facing the beam add
specular echoes. Artefacts: near-field clutter, reverberation bands, side-lobe haze spreading bright
echoes across the beams into the cavities, shadowing behind a strong reflector, wall dropout, and a
harmonic or fundamental look. The two styles are two scanners with their own settings. Everything is
precomputed per clip on polar grids, then applied to whole clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_POOL = 6    # speckle fields cross-faded over time
_STEPS = 6   # quantisation of the cross-fade between two pool fields
_SQUARE = (np.arange(256, dtype=np.float32) / 255.0) ** 2  # reflectivity (0-255) -> backscattered power


@dataclass(frozen=True)
class Acquisition:
    """Per-clip scanner settings (lengths in image-width units unless noted)."""

    sector_apex: tuple[float, float]
    half_angle: float       # rad
    depth: float
    gain_db: float
    dynamic_range_db: float
    gamma: float
    attenuation_db: float   # net loss at full depth after time-gain compensation
    tgc_db: tuple[float, ...]   # residual gain knots along depth
    clutter: float
    clutter_depth: float
    psf: float              # axial blur sigma, pixels at 112
    lateral_blur: float     # extra blur sigma at full depth, pixels at 112
    specular: float         # strength of echoes from interfaces facing the beam
    speckle_axial: float    # speckle correlation along the beam, polar samples
    speckle_lateral: float  # speckle correlation across beams, polar samples
    speckle_rate: float     # speckle fields per second at rest
    speckle_contrast: float  # 1 = fully developed speckle; lower = compounded/filtered or generator-like
    dropout: float          # depth of wall dropout (0 none, 1 full)
    markers: bool           # depth-scale dots beside the sector
    synthetic: bool         # the second scanner (EchoNet-Synthetic stand-in)
    flicker: float          # per-frame gain jitter
    harmonic: bool = True   # harmonic imaging: cleaner cavities, finer grain; fundamental: more haze
    sidelobe: float = 0.0   # share of the echo spread across the beams (haze in the cavities)
    reverb: float = 0.0     # strength of reverberation bands below the near field
    shadow: float = 0.0     # depth of an acoustic shadow behind a strong reflector (0 none)


def sample_acquisition(rng: np.random.Generator, style: str) -> Acquisition:
    """Draw scanner settings. Both styles frame the heart like EchoNet's zoomed A4C crop (the fan's apex at
    the top, its upper corners cut by the square); the `synthetic` style is a second scanner: a smoother,
    more compounded grain, a softer grey map and more haze, with mild frame-to-frame gain jitter."""
    synthetic = style == "synthetic"
    harmonic = rng.random() < (0.5 if synthetic else 0.75)
    fundamental = 0.0 if harmonic else 1.0
    return Acquisition(
        sector_apex=(rng.uniform(0.47, 0.55), rng.uniform(-0.06, 0.03)),
        half_angle=np.deg2rad(rng.uniform(33, 47)),
        depth=rng.uniform(1.0, 1.3),
        gain_db=rng.uniform(-17.0, -9.0) - (1.5 if synthetic else 0.0),
        dynamic_range_db=rng.uniform(36, 54),
        gamma=rng.uniform(1.2, 1.8) * (1.05 if synthetic else 1.0),
        attenuation_db=rng.uniform(3, 12),
        tgc_db=tuple(rng.normal(0, 1.5, size=4)),
        clutter=rng.uniform(0.1, 0.4) * (1.0 + 0.5 * fundamental),
        clutter_depth=rng.uniform(0.04, 0.1),
        psf=rng.uniform(0.25, 0.45) * (1.5 if synthetic else 1.0),
        lateral_blur=rng.uniform(0.5, 1.2),
        specular=rng.uniform(2.0, 4.0) * (0.7 if synthetic else 1.0),
        speckle_axial=rng.uniform(0.5, 0.9) * (1.3 if synthetic else 1.0) * (1.0 + 0.3 * fundamental),
        speckle_lateral=rng.uniform(1.0, 1.6) * (1.2 if synthetic else 1.0) * (1.0 + 0.2 * fundamental),
        # Fully developed speckle on the dynamic style: at 0.6-0.9 the walls' smooth edges, not the grain, set
        # the axial correlation (2.5 px vs the real clips' 1.1-2.0).
        speckle_contrast=rng.uniform(0.35, 0.6) if synthetic else rng.uniform(0.85, 1.0),  # compounding
        speckle_rate=rng.uniform(0.5, 2.0),
        dropout=rng.uniform(0.3, 0.9),
        markers=rng.random() < (0.3 if synthetic else 0.8),
        synthetic=synthetic,
        flicker=0.015 if synthetic else 0.0,
        harmonic=harmonic,
        sidelobe=rng.uniform(0.0, 0.012) * (1.0 + 1.5 * fundamental) * (1.5 if synthetic else 1.0),
        reverb=rng.uniform(0.0, 0.5) if rng.random() < 0.5 else 0.0,
        shadow=rng.uniform(0.4, 0.9) if rng.random() < 0.25 else 0.0,
    )


class Scanner:
    """Precomputed per-clip maps that turn reflectivity frames into B-mode frames."""

    def __init__(self, acq: Acquisition, size: int, rng: np.random.Generator,
                 dropout_centres: np.ndarray | None = None):
        self.acq, self.size = acq, size
        px = (np.arange(size, dtype=np.float32) + 0.5) / size
        x, y = np.meshgrid(px, px)
        dx, dy = x - acq.sector_apex[0], y - acq.sector_apex[1]
        r = np.hypot(dx, dy)
        theta = np.arctan2(dx, dy)  # 0 = straight down the fan
        edge = size * np.minimum((acq.half_angle - np.abs(theta)) * r, acq.depth - r) + 0.5
        self.sector = (np.clip(edge, 0.0, 1.0) * (dy > 0)).astype(np.float32)
        depth = np.clip(r / acq.depth, 0.0, 1.0)
        tgc = np.interp(depth, np.linspace(0, 1, len(acq.tgc_db)), acq.tgc_db)
        side = 1.0 - 0.45 * np.clip(np.abs(theta) / acq.half_angle, 0, 1) ** 4
        gain_db = acq.gain_db - acq.attenuation_db * depth + tgc
        self.gain = (10.0 ** (gain_db / 10.0) * side * self.sector ** 2).astype(np.float32)
        self.depth_weight = depth.astype(np.float32) ** 1.2
        # Central differences span 2 px; Sobel-like scaling keeps the specular strength per pixel.
        spec = acq.specular * (size / 112.0) / 2.0
        self.spec_x = (spec * dx / np.maximum(r, 1e-6)).astype(np.float32)
        self.spec_y = (spec * dy / np.maximum(r, 1e-6)).astype(np.float32)
        self._polar_maps(r, theta)
        self.pool = self._speckle_fields(rng, _POOL)
        streaks = np.interp(theta, np.linspace(-1.0, 1.0, 24), rng.uniform(0.2, 1.0, 24))
        near = acq.clutter * np.exp(-r / acq.clutter_depth) * streaks
        if acq.reverb > 0:  # copies of the near-field echo at multiples of the skin-to-rib depth
            d0 = rng.uniform(0.08, 0.16)
            for k in (1, 2):
                near += acq.reverb * acq.clutter * 0.5 ** k * np.exp(-((r - k * d0) / 0.012) ** 2) * streaks
        self.clutter = (near * self.sector).astype(np.float32)
        if acq.shadow > 0:  # a wedge of lost echo behind a strong reflector (rib, calcification)
            t0, width, r0 = rng.uniform(-0.8, 0.8) * acq.half_angle, rng.uniform(0.05, 0.15), rng.uniform(0.1, 0.5)
            wedge = np.exp(-((theta - t0) / width) ** 2) * (r > r0)
            self.gain *= (1.0 - acq.shadow * wedge).astype(np.float32)
        self.dropout = self._dropout_map(rng, dropout_centres, x, y)
        self.texture = self._texture(rng)
        self.overlay = self._markers(rng) if acq.markers else None
        grey = np.linspace(0.0, 1.0, 256) ** acq.gamma
        self.lut = np.clip(255.0 * grey + 0.5, 0, 255).astype(np.uint8)

    # ------------------------------------------------------------ static maps
    def _polar_maps(self, r: np.ndarray, theta: np.ndarray) -> None:
        """Image-grid -> beam-grid lookup (column = beam angle, row = depth) for cv2.remap."""
        self.n_beams, self.n_depth = self.size, self.size
        self.map_beam = ((theta / self.acq.half_angle + 1.0) * 0.5 * (self.n_beams - 1)).astype(np.float32)
        self.map_depth = (r / self.acq.depth * (self.n_depth - 1)).astype(np.float32)

    def _speckle_fields(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Complex Gaussian speckle fields (count, 2, H, W) correlated in beam coordinates, unit variance."""
        shape = (count, 2, self.n_depth, self.n_beams)
        raw = rng.standard_normal(shape, dtype=np.float32)
        out = np.empty((count, 2, self.size, self.size), dtype=np.float32)
        sx, sy = self.acq.speckle_lateral, self.acq.speckle_axial
        for i in range(count):
            for c in range(2):
                field = cv2.GaussianBlur(raw[i, c], (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
                field /= field.std() + 1e-8
                out[i, c] = cv2.remap(field, self.map_beam, self.map_depth, cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT)
        return out

    def _texture(self, rng: np.random.Generator) -> np.ndarray:
        """Static tissue heterogeneity (bright and weak patches, streaks along the beams)."""
        coarse = rng.lognormal(0.0, 0.35, size=(self.n_depth // 6 + 2, self.n_beams // 10 + 2)).astype(np.float32)
        polar = cv2.resize(coarse, (self.n_beams, self.n_depth), interpolation=cv2.INTER_CUBIC)
        tex = cv2.remap(polar, self.map_beam, self.map_depth, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return (np.clip(tex, 0.12, 4.0) ** 2).astype(np.float32)  # amplitude texture, in power

    def _dropout_map(self, rng: np.random.Generator, centres: np.ndarray | None, x: np.ndarray,
                     y: np.ndarray) -> np.ndarray:
        """Static echo loss where walls run along the beam (lateral wall, atrial septum) or deep."""
        loss = np.zeros_like(x)
        if centres is not None and self.acq.dropout > 0:
            for cx, cy in centres:
                if rng.random() < 0.65:
                    radius = rng.uniform(0.04, 0.09)
                    loss += rng.uniform(0.5, 1.0) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius ** 2))
        return (1.0 - self.acq.dropout * np.clip(loss, 0.0, 1.0)).astype(np.float32)

    def _markers(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Depth-scale dots just outside the right fan edge, as burned into EchoNet clips."""
        img = np.zeros((self.size, self.size), dtype=np.uint8)
        ax, ay = self.acq.sector_apex
        ang = self.acq.half_angle + 0.08
        direction = np.array([np.sin(ang), np.cos(ang)])
        for d in np.arange(0.12, rng.uniform(0.32, 0.45), 0.022):
            px = (np.array([ax, ay]) + d * direction) * self.size
            cv2.circle(img, (int(px[0]), int(px[1])), 0, int(rng.uniform(170, 230)), -1)
        tip = (np.array([ax, ay]) + np.array([0.06, -0.035])) * self.size
        cv2.circle(img, (int(tip[0]), int(tip[1])), max(1, self.size // 90), 150, -1)
        mask = img > 0
        return mask, img[mask]

    # ------------------------------------------------------------ per clip
    def speckle(self, rng: np.random.Generator, speed: np.ndarray, fps: float,
                flow: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Speckle power times tissue texture and the static gain map (T, H, W).

        Consecutive pool fields are cross-faded as complex fields (cos/sin weights keep the statistics);
        the fade is quantised to _STEPS levels so every frame is a lookup into a small per-clip table.
        With `flow` (remap maps from flow.remap_grids), each frame's speckle and texture are carried to where
        the tissue has moved since frame 0; the fan mask and gain stay with the probe.
        """
        rate = self.acq.speckle_rate * (1.0 + 1.5 * np.abs(speed))  # fields per second
        phase = np.cumsum(rate / fps) + rng.uniform(0, _POOL)
        step = np.floor(phase * _STEPS).astype(np.int64) % (_POOL * _STEPS)
        k, f = np.divmod(np.arange(_POOL * _STEPS), _STEPS)
        w = (0.5 * np.pi * f / _STEPS).astype(np.float32)
        ca, cb = np.cos(w)[:, None, None], np.sin(w)[:, None, None]
        a, b = self.pool[k], self.pool[(k + 1) % _POOL]
        i = ca * a[:, 0] + cb * b[:, 0]
        q = ca * a[:, 1] + cb * b[:, 1]
        table = (i * i + q * q) * np.float32(0.5)  # unit-variance components: mean power 1
        # A grid coarser than 112 px averages more speckle cells into each pixel (as downsampling would).
        contrast = self.acq.speckle_contrast * min(1.0, self.size / 112.0) ** 0.5
        if contrast != 1.0:
            table *= np.float32(contrast)
            table += np.float32(1.0 - contrast)
        table *= self.texture
        if flow is None:
            table *= self.gain  # attenuation, TGC, gain and fan mask ride along with the speckle
            return table[step]
        mx, my = flow
        out = np.empty((len(step), self.size, self.size), dtype=np.float32)
        for t, k in enumerate(step):
            cv2.remap(table[k], mx[t], my[t], cv2.INTER_LINEAR, dst=out[t], borderMode=cv2.BORDER_REFLECT)
            out[t] *= self.gain
        return out

    def render(self, reflectivity: np.ndarray, power: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """B-mode frames (T, H, W) uint8 from reflectivity (T, H, W) uint8 and speckle power (x gain)."""
        acq, scale = self.acq, self.size / 112.0
        # Backscattered power of the tissue: reflectivity squared (a lookup), times static heterogeneity.
        t_len, h, w = reflectivity.shape
        x = cv2.LUT(reflectivity.reshape(t_len * h, w), _SQUARE).reshape(t_len, h, w)
        x *= self.dropout
        wide = np.empty_like(x)
        for t in range(x.shape[0]):
            cv2.GaussianBlur(x[t], (0, 0), acq.lateral_blur * scale, dst=wide[t])
        if acq.sidelobe > 0:  # side lobes: bright echoes leak sideways into the dark cavities
            lobe = np.empty_like(x[0])
            for t in range(x.shape[0]):
                cv2.GaussianBlur(x[t], (0, 0), sigmaX=5.0 * scale, sigmaY=0.8 * scale, dst=lobe)
                x[t] += np.float32(acq.sidelobe) * lobe
        # Specular echoes: interfaces facing the beam (intensity gradient along the beam) reflect strongly.
        gx = np.zeros_like(x)
        gy = np.zeros_like(x)
        np.subtract(wide[:, :, 2:], wide[:, :, :-2], out=gx[:, :, 1:-1])
        np.subtract(wide[:, 2:, :], wide[:, :-2, :], out=gy[:, 1:-1, :])
        gx *= self.spec_x
        gy *= self.spec_y
        gx += gy
        np.abs(gx, out=gx)
        # The beam widens with depth: blend towards the blurred image.
        wide -= x
        wide *= self.depth_weight
        x += wide
        x += gx
        x += self.clutter
        x *= power  # speckle, with attenuation/TGC/gain and the fan mask folded in
        if acq.flicker:
            x *= (1.0 + rng.normal(0, acq.flicker, size=(x.shape[0], 1, 1))).astype(np.float32)
        # The 112-px grid averages several speckle cells (as EchoNet's downsampling does).
        blur = acq.psf * scale
        for t in range(x.shape[0]):
            cv2.GaussianBlur(x[t], (0, 0), blur, dst=x[t])
        # Log compression to 256 levels over the dynamic range, then the grey map (gamma) as a lookup.
        x += np.float32(1e-12)
        np.log10(x, out=x)
        x *= np.float32(10.0 * 255.0 / acq.dynamic_range_db)
        x += np.float32(255.5)
        np.clip(x, 0, 255, out=x)
        frames = cv2.LUT(x.astype(np.uint8).reshape(t_len * h, w), self.lut).reshape(t_len, h, w)
        if self.overlay is not None:
            mask, values = self.overlay
            frames[:, mask] = values
        return frames
