"""Synthetic DNGs (pidng) with a known orientation: a red top-left quadrant on grey."""

import numpy as np
from pidng.core import RAW2DNG, DNGTags, Tag
from pidng.defs import PhotometricInterpretation, CFAPattern, DNGVersion, Orientation
def make_dng(path, orientation=1, w=256, h=192):
    # a Bayer RGGB mosaic of a picture whose top-left quadrant is red, the rest grey
    rgb = np.full((h, w, 3), 1200, np.uint16)
    rgb[: h // 2, : w // 2] = (3800, 300, 300)
    raw = np.zeros((h, w), np.uint16)
    raw[0::2, 0::2] = rgb[0::2, 0::2, 0]
    raw[0::2, 1::2] = rgb[0::2, 1::2, 1]
    raw[1::2, 0::2] = rgb[1::2, 0::2, 1]
    raw[1::2, 1::2] = rgb[1::2, 1::2, 2]
    t = DNGTags()
    t.set(Tag.ImageWidth, w); t.set(Tag.ImageLength, h)
    t.set(Tag.TileWidth, w); t.set(Tag.TileLength, h)
    t.set(Tag.Orientation, orientation)
    t.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
    t.set(Tag.SamplesPerPixel, 1); t.set(Tag.BitsPerSample, 16)
    t.set(Tag.CFARepeatPatternDim, [2, 2]); t.set(Tag.CFAPattern, CFAPattern.RGGB)
    t.set(Tag.BlackLevel, 0); t.set(Tag.WhiteLevel, 4095)
    t.set(Tag.ColorMatrix1, [[1,1],[0,1],[0,1],[0,1],[1,1],[0,1],[0,1],[0,1],[1,1]])
    t.set(Tag.CalibrationIlluminant1, 21)
    t.set(Tag.AsShotNeutral, [[1,1],[1,1],[1,1]])
    t.set(Tag.DNGVersion, DNGVersion.V1_4); t.set(Tag.DNGBackwardVersion, DNGVersion.V1_2)
    t.set(Tag.Make, "imgproxy"); t.set(Tag.Model, "synthetic")
    r = RAW2DNG(); r.options(t, path="", compress=False)
    r.convert(raw, filename=str(path).removesuffix(".dng"))
