#!/usr/bin/env python3
"""Write radiomics/tests/data/pyradiomics_baseline/ from PyRadiomics' own test baseline.

PyRadiomics' repository ships test cases (`data/<case>_image.nrrd`, `_label.nrrd`) and, in
`data/baseline/baseline_<class>.csv`, feature values per test (a case under one of several
settings: `brain1`, `brain1_2d`, `brain1_FBN`, `brain1_combined`, `brain1_flatRegion`,
`brain1_normalization`, `brain1_resampling`, `brain1_resegmentation`, ...), with the settings
of each test in its `diagnostics_Configuration_Settings` row. Its own test accepts 3 % relative
difference, because the baseline was written by PyRadiomics 1.3–2.0 with older SimpleITK.

For every test whose images the repository ships (lung1 and lung2 images are not in it), this
script copies the images, writes the test's parameter file (its settings, image type Original,
the classes the baseline has for it), runs PyRadiomics' extractor (pip install
pyradiomics-bhklab, PyRadiomics 3.1) on it and records, per feature, the PyRadiomics 3.1 value
and the baseline value. Two more tests, `brain1_wavelet_log` and `brain2_wavelet_log`, have
PyRadiomics 3.1 values only: the filtered images (coif1 wavelet, LoG σ 1, 3, 5 mm) that the
baseline does not cover. `radiomics/tests/pyradiomics_baseline.rs` then checks FedRad's names
and values against both without Python.

    python3 radiomics/scripts/make_pyradiomics_baseline_fixture.py PYRADIOMICS_CHECKOUT
"""
import ast, csv, json, logging, os, shutil, subprocess, sys

import radiomics
from radiomics import featureextractor

repo = sys.argv[1]
out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "pyradiomics_baseline")
os.makedirs(out, exist_ok=True)
logging.getLogger("radiomics").setLevel(logging.ERROR)

CLASSES = ["shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]
tests = {}  # test -> {"case", "settings", "classes", "baseline": {feature: value}}
for cls in CLASSES:
    rows = list(csv.reader(open(os.path.join(repo, "data", "baseline", f"baseline_{cls}.csv"))))
    header, body = rows[0], {r[0]: r for r in rows[1:]}
    for i, test in enumerate(header[1:], 1):
        case = body["diagnostics_Configuration_TestCase"][i]
        if not os.path.exists(os.path.join(repo, "data", f"{case}_image.nrrd")):
            continue
        settings = ast.literal_eval(body["diagnostics_Configuration_Settings"][i])
        settings.pop("additionalInfo", None)
        t = tests.setdefault(test, {"case": case, "settings": settings, "classes": [], "baseline": {}})
        assert t["settings"] == settings, f"{test}: settings differ between classes"
        t["classes"].append(cls)
        for name, r in body.items():
            if not name.startswith("diagnostics") and r[i] != "":
                t["baseline"][name] = float(r[i])

# Filtered images, which PyRadiomics' baseline does not cover: every class of its defaults on
# the coif1 wavelet bands and LoG σ 1, 3, 5 mm of the two MR cases.
FILTERED = {"Original": {}, "Wavelet": {}, "LoG": {"sigma": [1.0, 3.0, 5.0]}}
for case in ("brain1", "brain2"):
    tests[f"{case}_wavelet_log"] = {"case": case, "settings": {"binWidth": 25, "label": 1}, "classes": [c for c in CLASSES if c != "shape2D"],
                                    "baseline": {}, "image_types": FILTERED}

def yaml_value(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    return str(v)

fixture = {"pyradiomics_version": radiomics.__version__,
           "source": "AIM-Harvard/pyradiomics " + subprocess.check_output(["git", "-C", repo, "rev-parse", "HEAD"], text=True).strip(),
           "tests": {}}
for test, t in sorted(tests.items()):
    for suffix in ("image", "label"):
        name = f"{t['case']}_{suffix}.nrrd"
        shutil.copyfile(os.path.join(repo, "data", name), os.path.join(out, name))
    params = "setting:\n" + "".join(f"  {k}: {yaml_value(v)}\n" for k, v in sorted(t["settings"].items()))
    image_types = t.get("image_types", {"Original": {}})
    params += "imageType:\n" + "".join(f"  {k}: {{{', '.join(f'{o}: {yaml_value(x)}' for o, x in v.items())}}}\n" for k, v in image_types.items())
    params += "featureClass:\n" + "".join(f"  {c}:\n" for c in t["classes"])
    ex = featureextractor.RadiomicsFeatureExtractor({"setting": t["settings"], "imageType": image_types,
                                                     "featureClass": {c: None for c in t["classes"]}})
    try:
        values = {k: float(v) for k, v in ex.execute(os.path.join(out, f"{t['case']}_image.nrrd"),
                                                    os.path.join(out, f"{t['case']}_label.nrrd")).items()
                  if not k.startswith("diagnostics")}
        error = None
    except Exception as e:  # recorded, so the test can check that FedRad refuses it too
        values, error = {}, f"{type(e).__name__}: {e}"
    fixture["tests"][test] = {"case": t["case"], "params": params, "classes": t["classes"],
                              "pyradiomics": values, "pyradiomics_error": error, "baseline": t["baseline"]}
    print(f"{test:<26} {len(values):>4} features (PyRadiomics {radiomics.__version__})"
          f"{'  ERROR ' + error if error else ''}, {len(t['baseline'])} baseline values")
json.dump(fixture, open(os.path.join(out, "reference.json"), "w"), indent=1, sort_keys=True)
