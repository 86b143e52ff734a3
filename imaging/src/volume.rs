/// Where a voxel grid sits in patient space: voxel (i, j, k) is at
/// `origin + direction · diag(spacing) · (i, j, k)`, in millimetres, in the file's world
/// frame (RAS for NIfTI).
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub origin: [f64; 3],
    /// Columns are the unit directions of the i, j, k axes.
    pub direction: [[f64; 3]; 3],
}

impl Geometry {
    pub fn axis_aligned(dims: [usize; 3], spacing: [f64; 3]) -> Self {
        Geometry { dims, spacing, origin: [0.0; 3], direction: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] }
    }

    pub fn voxel_count(&self) -> usize {
        self.dims.iter().product()
    }

    /// The 4×4 voxel-to-world affine, row-major.
    pub fn affine(&self) -> [[f64; 4]; 4] {
        let mut a = [[0.0; 4]; 4];
        for r in 0..3 {
            for c in 0..3 {
                a[r][c] = self.direction[r][c] * self.spacing[c];
            }
            a[r][3] = self.origin[r];
        }
        a[3][3] = 1.0;
        a
    }

    /// Whether two grids describe the same voxels, within `tolerance` (relative for spacing,
    /// millimetres for origin, absolute for direction cosines), like PyRadiomics'
    /// `geometryTolerance`. Returns the first difference found.
    pub fn mismatch(&self, other: &Geometry, tolerance: f64) -> Option<String> {
        if self.dims != other.dims {
            return Some(format!("size {:?} vs {:?}", self.dims, other.dims));
        }
        for i in 0..3 {
            if (self.spacing[i] - other.spacing[i]).abs() > tolerance * self.spacing[i].abs().max(1.0) {
                return Some(format!("spacing {:?} vs {:?}", self.spacing, other.spacing));
            }
            if (self.origin[i] - other.origin[i]).abs() > tolerance.max(1e-6) * 10.0 {
                return Some(format!("origin {:?} vs {:?}", self.origin, other.origin));
            }
            for j in 0..3 {
                if (self.direction[i][j] - other.direction[i][j]).abs() > tolerance.max(1e-6) {
                    return Some(format!("direction {:?} vs {:?}", self.direction, other.direction));
                }
            }
        }
        None
    }
}

/// A scalar 3D volume; `data` is x-fastest (index = i + nx·(j + ny·k)), as in NIfTI.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub geometry: Geometry,
    pub data: Vec<f32>,
    /// How the file stored its samples. Values are held as f32 regardless; the stored type
    /// matters where a reference tool writes results back in it (ITK's resampler casts its
    /// output to the input's pixel type, truncating for integer types).
    pub sample: SampleType,
}

/// The pixel type a volume was stored with, as ITK would load it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleType {
    /// An integer type with its range (e.g. int16: −32768..=32767).
    Integer {
        min: f64,
        max: f64,
    },
    Float32,
    Float64,
}

impl SampleType {
    /// A value computed in double precision, written back as this type the way ITK's
    /// `ResampleImageFilter` does: clamped to the type's range, then truncated toward zero
    /// (`static_cast`) for integers; rounded to single precision for float.
    pub fn cast(self, v: f64) -> f64 {
        match self {
            SampleType::Integer { min, max } => v.clamp(min, max).trunc(),
            SampleType::Float32 => v as f32 as f64,
            SampleType::Float64 => v,
        }
    }
}

impl Volume {
    /// A volume whose samples are single-precision floats (what `data` holds).
    pub fn new(geometry: Geometry, data: Vec<f32>) -> Self {
        assert_eq!(geometry.voxel_count(), data.len(), "volume data does not fill its grid");
        Volume { geometry, data, sample: SampleType::Float32 }
    }

    pub fn with_sample(mut self, sample: SampleType) -> Self {
        self.sample = sample;
        self
    }

    pub fn dims(&self) -> [usize; 3] {
        self.geometry.dims
    }

    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        let [nx, ny, _] = self.geometry.dims;
        i + nx * (j + ny * k)
    }
}
