//! Aggregates: the only thing a site sends.
//!
//! An aggregate is a set of named dense f64 tensors (sums, counts, centred sums of squares)
//! plus the number of patients it summarises. Each federated algorithm in
//! [`crate::algorithms`] defines the tensor names it writes on the site and reads on the
//! coordinator; this module gives both halves a checked way to do so.

use crate::proto::{Aggregate, Tensor};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AggregateError {
    #[error("aggregate from site {site} lacks tensor `{name}`")]
    Missing { site: String, name: String },
    #[error("tensor `{name}` from site {site} has {got} values, expected {expected}")]
    Length { site: String, name: String, got: usize, expected: usize },
    #[error("tensor `{name}` from site {site} should hold counts but holds {value}")]
    NotACount { site: String, name: String, value: f64 },
    #[error("tensor `{name}` from site {site} holds a non-finite value")]
    NonFinite { site: String, name: String },
}

/// Builds an [`Aggregate`] tensor by tensor.
#[derive(Debug, Default)]
pub struct AggregateBuilder {
    patient_count: u64,
    tensors: Vec<Tensor>,
}

impl AggregateBuilder {
    pub fn new(patient_count: u64) -> Self {
        Self { patient_count, tensors: Vec::new() }
    }

    pub fn scalar(self, name: impl Into<String>, value: f64) -> Self {
        self.tensor(name, vec![], vec![value])
    }

    pub fn vector(self, name: impl Into<String>, values: Vec<f64>) -> Self {
        let n = values.len() as u64;
        self.tensor(name, vec![n], values)
    }

    pub fn matrix(self, name: impl Into<String>, rows: usize, cols: usize, values: Vec<f64>) -> Self {
        assert_eq!(rows * cols, values.len(), "matrix shape does not match its values");
        self.tensor(name, vec![rows as u64, cols as u64], values)
    }

    /// A tensor of any rank (row-major).
    pub fn tensor_nd(self, name: impl Into<String>, shape: Vec<u64>, values: Vec<f64>) -> Self {
        assert_eq!(shape.iter().product::<u64>() as usize, values.len(), "tensor shape does not match its values");
        self.tensor(name, shape, values)
    }

    fn tensor(mut self, name: impl Into<String>, shape: Vec<u64>, values: Vec<f64>) -> Self {
        self.tensors.push(Tensor { name: name.into(), shape, values });
        self
    }

    /// Adds every tensor of `other` under `prefix` (several answers in one aggregate).
    pub fn nested(mut self, prefix: &str, other: Aggregate) -> Self {
        for mut t in other.tensors {
            t.name = format!("{prefix}{}", t.name);
            self.tensors.push(t);
        }
        self
    }

    pub fn build(self) -> Aggregate {
        Aggregate { patient_count: self.patient_count, tensors: self.tensors, masked: Vec::new() }
    }
}

/// One site's answer to one task, as the coordinator holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteAggregate {
    pub site_id: String,
    pub aggregate: Aggregate,
}

impl SiteAggregate {
    pub fn new(site_id: impl Into<String>, aggregate: Aggregate) -> Self {
        Self { site_id: site_id.into(), aggregate }
    }

    pub fn patient_count(&self) -> u64 {
        self.aggregate.patient_count
    }

    /// The tensors added under `prefix` by [`AggregateBuilder::nested`], as their own answer.
    pub fn nested(&self, prefix: &str) -> SiteAggregate {
        let tensors = self
            .aggregate
            .tensors
            .iter()
            .filter_map(|t| t.name.strip_prefix(prefix).map(|n| Tensor { name: n.to_string(), shape: t.shape.clone(), values: t.values.clone() }))
            .collect();
        SiteAggregate::new(self.site_id.clone(), Aggregate { patient_count: self.aggregate.patient_count, tensors, masked: Vec::new() })
    }

    pub fn values(&self, name: &str) -> Result<&[f64], AggregateError> {
        let t = self.aggregate.tensors.iter().find(|t| t.name == name).ok_or_else(|| AggregateError::Missing { site: self.site_id.clone(), name: name.into() })?;
        if t.values.iter().any(|v| !v.is_finite()) {
            return Err(AggregateError::NonFinite { site: self.site_id.clone(), name: name.into() });
        }
        Ok(&t.values)
    }

    pub fn vector(&self, name: &str, expected_len: usize) -> Result<&[f64], AggregateError> {
        let v = self.values(name)?;
        if v.len() != expected_len {
            return Err(AggregateError::Length { site: self.site_id.clone(), name: name.into(), got: v.len(), expected: expected_len });
        }
        Ok(v)
    }

    pub fn scalar(&self, name: &str) -> Result<f64, AggregateError> {
        Ok(self.vector(name, 1)?[0])
    }

    pub fn count(&self, name: &str) -> Result<u64, AggregateError> {
        Ok(self.counts(name, 1)?[0])
    }

    /// A vector of non-negative integral counts.
    pub fn counts(&self, name: &str, expected_len: usize) -> Result<Vec<u64>, AggregateError> {
        self.vector(name, expected_len)?
            .iter()
            .map(|&v| {
                if v >= 0.0 && v.fract() == 0.0 && v < 9.0e15 {
                    Ok(v as u64)
                } else {
                    Err(AggregateError::NotACount { site: self.site_id.clone(), name: name.into(), value: v })
                }
            })
            .collect()
    }

    /// Counts of any length (sparse histograms, whose length the site decides).
    pub fn counts_any(&self, name: &str) -> Result<Vec<u64>, AggregateError> {
        let n = self.values(name)?.len();
        self.counts(name, n)
    }

    /// Integral values of any sign (grid indices).
    pub fn integers_any(&self, name: &str) -> Result<Vec<i64>, AggregateError> {
        self.values(name)?
            .iter()
            .map(|&v| {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(v as i64)
                } else {
                    Err(AggregateError::NotACount { site: self.site_id.clone(), name: name.into(), value: v })
                }
            })
            .collect()
    }
}

/// Size of an aggregate on the wire, for the per-step byte accounting in the report.
pub fn encoded_len(aggregate: &Aggregate) -> usize {
    prost::Message::encoded_len(aggregate)
}
