#!/usr/bin/env python3
"""Compare FedRad's features with PyRadiomics on the same image, mask and settings.

Runs `fedrad-radiomics extract` and PyRadiomics (pip install pyradiomics-bhklab) with the same
discretisation (PyRadiomics binWidth), Original image, texture as PyRadiomics computes it
("3D, averaged" for GLCM/GLRLM, "3D" for the zone families), then prints, for every
PyRadiomics feature FedRad computes under another name or definition, both values and their
relative difference. Exit status 1 if a feature marked `same` (identical definition) differs
by more than 1e-6 relative.

    python3 radiomics/scripts/compare_pyradiomics.py IMAGE MASK [--bin-width 25] [--normalize 100]
        [--image-types Original,Wavelet,LoG] [--sigma 1.0,3.0] [--wavelet coif1] [--fedrad-radiomics PATH]
        [--resample 2,2,2 [--interpolator sitkBSpline]] [--pad-distance 5] [--pre-crop]
        [--setting 'distances: [1, 2]'] [--setting 'weightingNorm: euclidean'] ...
"""
import argparse, csv, logging, os, subprocess, sys, tempfile

try:
    from radiomics import featureextractor
except ImportError:
    sys.exit("PyRadiomics is not installed: pip install pyradiomics-bhklab")

# PyRadiomics name -> (FedRad column, relation). (PyRadiomics' StandardDeviation is deprecated
# and not computed by its extractor, so it has nothing to compare with.) relation: "same" (same definition),
# "kurtosis" (PyRadiomics = excess + 3), "differs" (known definitional difference, reported only).
FIRSTORDER = {"Mean": "Mean", "Variance": "Variance", "Skewness": "Skewness", "Kurtosis": "Kurtosis",
    "Entropy": "Entropy", "Uniformity": "Uniformity", "TotalEnergy": "TotalEnergy",
    "Median": "Median", "Minimum": "Minimum", "Maximum": "Maximum", "10Percentile": "Percentile10", "90Percentile": "Percentile90",
    "InterquartileRange": "InterquartileRange", "Range": "Range", "MeanAbsoluteDeviation": "MeanAbsoluteDeviation",
    "RobustMeanAbsoluteDeviation": "RobustMeanAbsoluteDeviation", "Energy": "Energy", "RootMeanSquared": "RootMeanSquare"}
GLCM = {"Autocorrelation": "Autocorrelation", "JointAverage": "JointAverage", "ClusterProminence": "ClusterProminence",
    "ClusterShade": "ClusterShade", "ClusterTendency": "ClusterTendency", "Contrast": "Contrast", "Correlation": "Correlation",
    "DifferenceAverage": "DifferenceAverage", "DifferenceEntropy": "DifferenceEntropy", "DifferenceVariance": "DifferenceVariance",
    "JointEnergy": "AngularSecondMoment", "JointEntropy": "JointEntropy", "Imc1": "InformationCorrelation1", "Imc2": "InformationCorrelation2",
    "Idm": "InverseDifferenceMoment", "Idmn": "NormalisedInverseDifferenceMoment", "Id": "InverseDifference", "Idn": "NormalisedInverseDifference",
    "InverseVariance": "InverseVariance", "MaximumProbability": "JointMaximum", "SumAverage": "SumAverage", "SumEntropy": "SumEntropy",
    "SumSquares": "JointVariance"}
GLRLM = {"ShortRunEmphasis": "ShortRunsEmphasis", "LongRunEmphasis": "LongRunsEmphasis", "GrayLevelNonUniformity": "GreyLevelNonUniformity",
    "GrayLevelNonUniformityNormalized": "NormalisedGreyLevelNonUniformity", "RunLengthNonUniformity": "RunLengthNonUniformity",
    "RunLengthNonUniformityNormalized": "NormalisedRunLengthNonUniformity", "RunPercentage": "RunPercentage", "GrayLevelVariance": "GreyLevelVariance",
    "RunVariance": "RunLengthVariance", "RunEntropy": "RunEntropy", "LowGrayLevelRunEmphasis": "LowGreyLevelRunEmphasis",
    "HighGrayLevelRunEmphasis": "HighGreyLevelRunEmphasis", "ShortRunLowGrayLevelEmphasis": "ShortRunLowGreyLevelEmphasis",
    "ShortRunHighGrayLevelEmphasis": "ShortRunHighGreyLevelEmphasis", "LongRunLowGrayLevelEmphasis": "LongRunLowGreyLevelEmphasis",
    "LongRunHighGrayLevelEmphasis": "LongRunHighGreyLevelEmphasis"}
GLSZM = {"SmallAreaEmphasis": "SmallZoneEmphasis", "LargeAreaEmphasis": "LargeZoneEmphasis", "GrayLevelNonUniformity": "GreyLevelNonUniformity",
    "GrayLevelNonUniformityNormalized": "NormalisedGreyLevelNonUniformity", "SizeZoneNonUniformity": "ZoneSizeNonUniformity",
    "SizeZoneNonUniformityNormalized": "NormalisedZoneSizeNonUniformity", "ZonePercentage": "ZonePercentage", "GrayLevelVariance": "GreyLevelVariance",
    "ZoneVariance": "ZoneSizeVariance", "ZoneEntropy": "ZoneSizeEntropy", "LowGrayLevelZoneEmphasis": "LowGreyLevelZoneEmphasis",
    "HighGrayLevelZoneEmphasis": "HighGreyLevelZoneEmphasis", "SmallAreaLowGrayLevelEmphasis": "SmallZoneLowGreyLevelEmphasis",
    "SmallAreaHighGrayLevelEmphasis": "SmallZoneHighGreyLevelEmphasis", "LargeAreaLowGrayLevelEmphasis": "LargeZoneLowGreyLevelEmphasis",
    "LargeAreaHighGrayLevelEmphasis": "LargeZoneHighGreyLevelEmphasis"}
GLDM = {"SmallDependenceEmphasis": "LowDependenceEmphasis", "LargeDependenceEmphasis": "HighDependenceEmphasis",
    "GrayLevelNonUniformity": "GreyLevelNonUniformity", "DependenceNonUniformity": "DependenceCountNonUniformity",
    "DependenceNonUniformityNormalized": "NormalisedDependenceCountNonUniformity", "GrayLevelVariance": "GreyLevelVariance",
    "DependenceVariance": "DependenceCountVariance", "DependenceEntropy": "DependenceCountEntropy", "LowGrayLevelEmphasis": "LowGreyLevelCountEmphasis",
    "HighGrayLevelEmphasis": "HighGreyLevelCountEmphasis", "SmallDependenceLowGrayLevelEmphasis": "LowDependenceLowGreyLevelEmphasis",
    "SmallDependenceHighGrayLevelEmphasis": "LowDependenceHighGreyLevelEmphasis", "LargeDependenceLowGrayLevelEmphasis": "HighDependenceLowGreyLevelEmphasis",
    "LargeDependenceHighGrayLevelEmphasis": "HighDependenceHighGreyLevelEmphasis"}
NGTDM = {k: k for k in ["Coarseness", "Contrast", "Busyness", "Complexity", "Strength"]}
SHAPE = {"MeshVolume": "VolumeMesh", "VoxelVolume": "VolumeVoxelCounting", "SurfaceArea": "SurfaceArea", "SurfaceVolumeRatio": "SurfaceToVolumeRatio",
    "Sphericity": "Sphericity", "Maximum3DDiameter": "Maximum3DDiameter", "MajorAxisLength": "MajorAxisLength", "MinorAxisLength": "MinorAxisLength",
    "LeastAxisLength": "LeastAxisLength", "Elongation": "Elongation", "Flatness": "Flatness"}
SHAPE2D = {k: k for k in ["MeshSurface", "PixelSurface", "Perimeter", "PerimeterSurfaceRatio", "Sphericity", "SphericalDisproportion",
    "MaximumDiameter", "MajorAxisLength", "MinorAxisLength", "Elongation"]}
# Class -> (name table, FedRad family, which of the two requested aggregations it has).
CLASSES = {"firstorder": (FIRSTORDER, "firstorder", ""), "glcm": (GLCM, "glcm", "@directional"), "glrlm": (GLRLM, "glrlm", "@directional"),
    "glszm": (GLSZM, "glszm", "@zonal"), "gldm": (GLDM, "gldm", "@zonal"), "ngtdm": (NGTDM, "ngtdm", "@zonal"), "shape": (SHAPE, "shape", "")}
if "--shape2d" in sys.argv:
    sys.argv.remove("--shape2d")
    CLASSES["shape2D"] = (SHAPE2D, "shape2D", "")

ap = argparse.ArgumentParser()
ap.add_argument("image"); ap.add_argument("mask")
ap.add_argument("--bin-width", type=float, default=25.0)
ap.add_argument("--image-types", default="Original", help="comma-separated: Original,Square,SquareRoot,Logarithm,Exponential,Wavelet,LoG,Gradient,LBP2D,LBP3D")
ap.add_argument("--sigma", default="1.0,3.0", help="LoG σ values in mm")
ap.add_argument("--wavelet", default="coif1")
ap.add_argument("--level", type=int, default=1)
ap.add_argument("--normalize", type=float, default=None, help="normalise the image (z-score × this scale)")
ap.add_argument("--resample", default=None, help="resampledPixelSpacing, e.g. 1,1,3 (0 keeps an axis)")
ap.add_argument("--interpolator", default="sitkBSpline", help="sitkNearestNeighbor, sitkLinear or sitkBSpline")
ap.add_argument("--pad-distance", type=int, default=5)
ap.add_argument("--pre-crop", action="store_true", help="crop to the ROI box + padDistance before filtering")
ap.add_argument("--setting", action="append", default=[], help="any further `setting` entry, as YAML 'key: value', given to both")
ap.add_argument("--fedrad-radiomics", default=os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "fedrad-radiomics"))
a = ap.parse_args()

sigmas = [float(x) for x in a.sigma.split(",")]
def options(t, as_dict=False):
    o = {"LoG": {"sigma": sigmas}, "Wavelet": {"wavelet": a.wavelet, "level": a.level}}.get(t, {})
    if as_dict:
        return o
    return "{" + ", ".join(f"{k}: {v}" for k, v in o.items()) + "}"

tmp = tempfile.mkdtemp()
params = os.path.join(tmp, "params.yaml")
with open(params, "w") as f:
    types = a.image_types.split(",")
    norm = f"  normalize: true\n  normalizeScale: {a.normalize}\n" if a.normalize else ""
    if a.resample:
        norm += f"  resampledPixelSpacing: [{a.resample}]\n  interpolator: {a.interpolator}\n"
    norm += f"  padDistance: {a.pad_distance}\n  preCrop: {'true' if a.pre_crop else 'false'}\n"
    for extra in a.setting:
        norm += f"  {extra}\n"
    # The aggregations PyRadiomics computes: weighted directions are merged; force2D is 2.5D.
    weighted = any(e.strip().startswith("weightingNorm") for e in a.setting)
    force2d = any(e.replace(" ", "") == "force2D:true" for e in a.setting)
    directional = ("2.5D, " if force2d else "3D, ") + ("merged" if weighted else ("direction-merged" if force2d else "averaged"))
    zonal = "2.5D" if force2d else "3D"
    # FedRad's IBSI names (with the aggregation column) are what the tables above map to.
    f.write(f"setting:\n  featureNaming: ibsi\n  binWidth: {a.bin_width}\n{norm}  ibsiAggregation: [\"{directional}\", \"{zonal}\"]\nimageType:\n")
    for t in types:
        f.write(f"  {t}: {options(t)}\n")
    f.write("featureClass:\n")
    for c in CLASSES:
        f.write(f"  {c}:\n")
out = os.path.join(tmp, "fedrad.csv")
subprocess.run([a.fedrad_radiomics, "extract", "--image", a.image, "--mask", a.mask, "--params", params, "--out", out], check=True, stdout=subprocess.DEVNULL)
ours = {}
for row in csv.DictReader(open(out)):
    # One directional and one zonal aggregation are requested (see `ibsiAggregation` above);
    # key each feature by which of the two it is.
    kind = "" if not row["aggregation"] else ("@zonal" if row["aggregation"] == zonal else "@directional")
    ours[row["feature"] + kind] = float(row["value"])

logging.getLogger("radiomics").setLevel(logging.ERROR)
setting = {"binWidth": a.bin_width, "label": 1}
if a.normalize:
    setting.update(normalize=True, normalizeScale=a.normalize)
if a.resample:
    setting.update(resampledPixelSpacing=[float(x) for x in a.resample.split(",")], interpolator=a.interpolator)
setting.update(padDistance=a.pad_distance, preCrop=a.pre_crop)
import yaml
for extra in a.setting:
    setting.update(yaml.safe_load(extra))
ex = featureextractor.RadiomicsFeatureExtractor({"setting": setting, "imageType": {t: options(t, True) for t in types},
    "featureClass": {c: None for c in CLASSES}})
theirs = {k: float(v) for k, v in ex.execute(a.image, a.mask).items() if not k.startswith("diagnostics")}
prefixes = sorted({k.split("_")[0] for k in theirs} | {k.split("_")[0] for k in ours})

rows, bad = [], 0
for prefix in prefixes:
  for cls, (table, fam, suffix) in CLASSES.items():
    if cls in ("shape", "shape2D") and prefix != "original":
        continue
    for py, spec in table.items():
        name, rel = (spec, "same") if isinstance(spec, str) else spec
        p = theirs.get(f"{prefix}_{cls}_{py}")
        o = ours.get(f"{prefix}_{fam}_{name}{suffix}")
        cls_label = f"{prefix}_{cls}"
        if p is None and o is None:
            continue  # neither computes it (e.g. first-order of an image type not enabled)
        if p is None or o is None:
            rows.append((cls_label, py, p, o, float("nan"), "missing")); continue
        if rel == "kurtosis":
            o = o + 3.0
        d = abs(p - o) / max(abs(p), 1e-12)
        status = "ok" if d <= 1e-6 else ("close" if d <= 1e-3 else "DIFF")
        bad += status != "ok"
        rows.append((cls_label, py, p, o, d, status))
print(f"{'class':<22} {'PyRadiomics feature':<40} {'PyRadiomics':>14} {'FedRad':>14} {'rel. diff':>10}")
for r in rows:
    print(f"{r[0]:<22} {r[1]:<40} {r[2] if r[2] is not None else float('nan'):>14.6g} {r[3] if r[3] is not None else float('nan'):>14.6g} {r[4]:>10.2e}  {r[5]}")
n_ok = sum(r[5] == "ok" for r in rows)
print(f"\n{n_ok} of {len(rows)} mapped PyRadiomics features agree to 1e-6 relative")
by_prefix = {}
for r in rows:
    p = r[0].rsplit("_", 1)[0]
    ok, n = by_prefix.get(p, (0, 0))
    by_prefix[p] = (ok + (r[5] == "ok"), n + 1)
for p, (ok, n) in sorted(by_prefix.items()):
    print(f"  {p:<28} {ok:>4} / {n}")
sys.exit(1 if bad else 0)
