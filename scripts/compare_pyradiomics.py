#!/usr/bin/env python3
"""Compare FedRad's features with PyRadiomics on the same image, mask and settings.

Runs `site-agent extract` and PyRadiomics (pip install pyradiomics-bhklab) with the same
discretisation (PyRadiomics binWidth), Original image, texture as PyRadiomics computes it
("3D, averaged" for GLCM/GLRLM, "3D" for the zone families), then prints, for every
PyRadiomics feature FedRad computes under another name or definition, both values and their
relative difference. Exit status 1 if a feature marked `same` (identical definition) differs
by more than 1e-6 relative.

    python3 scripts/compare_pyradiomics.py IMAGE MASK [--bin-width 25] [--site-agent PATH]
"""
import argparse, csv, logging, os, subprocess, sys, tempfile

try:
    from radiomics import featureextractor
except ImportError:
    sys.exit("PyRadiomics is not installed: pip install pyradiomics-bhklab")

# PyRadiomics name -> (FedRad column, relation). relation: "same" (same definition),
# "kurtosis" (PyRadiomics = excess + 3), "differs" (known definitional difference, reported only).
FIRSTORDER = {"Mean": "Mean", "Variance": "Variance", "Skewness": "Skewness", "Kurtosis": "Kurtosis",
    "Entropy": "Entropy", "Uniformity": "Uniformity", "TotalEnergy": "TotalEnergy", "StandardDeviation": "StandardDeviation",
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
CLASSES = {"firstorder": (FIRSTORDER, "firstorder", ""), "glcm": (GLCM, "glcm", "_3Davg"), "glrlm": (GLRLM, "glrlm", "_3Davg"),
    "glszm": (GLSZM, "glszm", "_3D"), "gldm": (GLDM, "gldm", "_3D"), "ngtdm": (NGTDM, "ngtdm", "_3D"), "shape": (SHAPE, "shape", "")}

ap = argparse.ArgumentParser()
ap.add_argument("image"); ap.add_argument("mask")
ap.add_argument("--bin-width", type=float, default=25.0)
ap.add_argument("--image-types", default="Original", help="comma-separated: Original,Square,SquareRoot,Logarithm,Exponential")
ap.add_argument("--site-agent", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "site-agent"))
a = ap.parse_args()

tmp = tempfile.mkdtemp()
params = os.path.join(tmp, "params.yaml")
with open(params, "w") as f:
    types = a.image_types.split(",")
    f.write(f"setting:\n  binWidth: {a.bin_width}\n  ibsiAggregation: [\"3D, averaged\", \"3D\"]\nimageType:\n")
    for t in types:
        f.write(f"  {t}: {{}}\n")
    f.write("featureClass:\n")
    for c in ["shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]:
        f.write(f"  {c}:\n")
out = os.path.join(tmp, "fedrad.csv")
subprocess.run([a.site_agent, "extract", "--image", a.image, "--mask", a.mask, "--params", params, "--out", out], check=True, stdout=subprocess.DEVNULL)
ours = {}
for row in csv.DictReader(open(out)):
    short = {"3D, averaged": "_3Davg", "3D": "_3D", "": ""}[row["aggregation"]]
    ours[row["feature"] + short] = float(row["value"])

logging.getLogger("radiomics").setLevel(logging.ERROR)
ex = featureextractor.RadiomicsFeatureExtractor({"setting": {"binWidth": a.bin_width, "label": 1}, "imageType": {t: {} for t in types},
    "featureClass": {c: None for c in CLASSES}})
prefixes = [t.lower() for t in types]
theirs = {k: float(v) for k, v in ex.execute(a.image, a.mask).items() if k.split("_")[0] in prefixes}

rows, bad = [], 0
for prefix in prefixes:
  for cls, (table, fam, suffix) in CLASSES.items():
    if cls == "shape" and prefix != "original":
        continue
    for py, spec in table.items():
        name, rel = (spec, "same") if isinstance(spec, str) else spec
        p = theirs.get(f"{prefix}_{cls}_{py}")
        o = ours.get(f"{prefix}_{fam}_{name}{suffix}")
        cls_label = f"{prefix}_{cls}"
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
sys.exit(1 if bad else 0)
