#!/usr/bin/env python3
"""Time PyRadiomics on one core on the case written by `cargo bench -p fedrad-radiomics --bench extraction`.

Same image and mask, one core, the feature classes both tools compute (shape, firstorder,
glcm, glrlm, glszm, gldm, ngtdm), for two image-type sets: the Original image, and Original +
Wavelet (coif1, 8 bands) + LoG (σ = 1, 2, 3, 4, 5 mm) — the set issue 3 times. Needs
`pip install pyradiomics-bhklab`.

    python3 radiomics/scripts/bench_pyradiomics.py [/tmp/fedrad-bench-extraction]
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the FedRad figure
import logging, sys, tempfile, time

try:
    from radiomics import featureextractor
except ImportError:
    sys.exit("PyRadiomics is not installed: pip install pyradiomics-bhklab")

import SimpleITK as sitk
sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(1)
logging.getLogger("radiomics").setLevel(logging.ERROR)
folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), "fedrad-bench-extraction")
img, msk = os.path.join(folder, "image.nii.gz"), os.path.join(folder, "mask.nii.gz")
for label, types, runs in [
    ("Original", {"Original": {}}, 5),
    ("Original + Wavelet + LoG(σ 1–5)", {"Original": {}, "Wavelet": {}, "LoG": {"sigma": [1.0, 2.0, 3.0, 4.0, 5.0]}}, 3),
]:
    params = {
        "setting": {"binCount": 32, "normalize": True, "normalizeScale": 100, "label": 1},
        "imageType": types,
        "featureClass": {c: None for c in ["shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]},
    }
    ex = featureextractor.RadiomicsFeatureExtractor(params)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = ex.execute(img, msk)
        times.append(time.perf_counter() - t)
    n = sum(1 for k in result if not k.startswith("diagnostics"))
    times.sort()
    print(f"PyRadiomics {__import__('radiomics').__version__}, {label}: {n} features, median {1e3 * times[len(times) // 2]:.0f} ms, best {1e3 * times[0]:.0f} ms per case ({runs} runs)")
