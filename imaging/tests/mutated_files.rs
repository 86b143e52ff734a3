//! A bounded mutation fuzz of the readers, run with the tests (`cargo test mutated`): valid
//! NIfTI (.nii, .nii.gz) and NRRD files are damaged thousands of ways — flipped bytes
//! (mostly in the header), truncation, inserted garbage, absurd dimensions — and every read
//! must end in a volume or a typed error, never a panic, a hang or a huge allocation (the
//! voxel limit is set low). Deterministic: a fixed xorshift stream.

use fedrad_imaging::nifti::{self, StoredType};
use fedrad_imaging::nrrd;
use fedrad_imaging::{Geometry, Volume};

fn sample() -> Volume {
    let g = Geometry::axis_aligned([7, 6, 5], [0.8, 0.9, 3.0]);
    let data = (0..g.voxel_count()).map(|i| (i % 17) as f32 * 3.5 - 10.0).collect();
    Volume::new(g, data)
}

struct Stream(u64);

impl Stream {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One damaged copy of `bytes`; damage concentrates in the first `header` bytes.
fn mutate(bytes: &[u8], header: usize, s: &mut Stream) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match s.next(5) {
        0 | 1 => {
            for _ in 0..1 + s.next(8) {
                let i = if s.next(4) > 0 { s.next(header.min(b.len())) } else { s.next(b.len()) };
                b[i] = s.next(256) as u8;
            }
        }
        2 => b.truncate(s.next(b.len())),
        3 => {
            let at = s.next(b.len());
            let junk: Vec<u8> = (0..1 + s.next(64)).map(|_| s.next(256) as u8).collect();
            b.splice(at..at, junk);
        }
        _ => {
            // A plausible but absurd number somewhere in the header.
            let i = s.next(header.min(b.len()).saturating_sub(4).max(1));
            let v: [u8; 4] = [0xff, 0x7f, s.next(256) as u8, 0x7f];
            for (k, x) in v.iter().enumerate() {
                if i + k < b.len() {
                    b[i + k] = *x;
                }
            }
        }
    }
    b
}

#[test]
fn mutated_nifti_and_nrrd_files_give_errors_not_panics() {
    let dir = std::env::temp_dir().join(format!("fedrad-mutated-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vol = sample();
    let originals = [
        (
            "nii",
            {
                nifti::write(&dir.join("a.nii"), &vol, StoredType::I16).unwrap();
                std::fs::read(dir.join("a.nii")).unwrap()
            },
            352,
        ),
        (
            "nii.gz",
            {
                nifti::write(&dir.join("a.nii.gz"), &vol, StoredType::F32).unwrap();
                std::fs::read(dir.join("a.nii.gz")).unwrap()
            },
            64,
        ),
        (
            "nrrd",
            {
                nrrd::write(&dir.join("a.nrrd"), &vol).unwrap();
                std::fs::read(dir.join("a.nrrd")).unwrap()
            },
            300,
        ),
    ];
    let mut s = Stream(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut refused) = (0, 0);
    for (ext, bytes, header) in &originals {
        let path = dir.join(format!("m.{ext}"));
        for _ in 0..700 {
            std::fs::write(&path, mutate(bytes, *header, &mut s)).unwrap();
            let started = std::time::Instant::now();
            let r = if *ext == "nrrd" { nrrd::read_with_limit(&path, 1 << 20) } else { nifti::read_with_limit(&path, 1 << 20) };
            assert!(started.elapsed().as_secs() < 5, "a damaged .{ext} took {:?}", started.elapsed());
            match r {
                Ok(v) => {
                    assert_eq!(v.data.len(), v.geometry.voxel_count());
                    ok += 1;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    refused += 1;
                }
            }
        }
    }
    // The damage is real: most files are refused, some survive harmless flips.
    assert!(refused > 1000 && ok > 10, "{refused} refused, {ok} read");
    let _ = std::fs::remove_dir_all(&dir);
}
