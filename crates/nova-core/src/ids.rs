//! Typed identifiers.
//!
//! Public ids carry a short prefix (`doc_`, `job_`) followed by a UUIDv7 in simple form, so an id says what
//! it names, sorts by creation time, and a document id can never be passed where a job id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An id string that does not have the expected prefix and UUID form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id (expected `{prefix}` followed by 32 hex digits)")]
pub struct ParseIdError {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0.simple())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = || ParseIdError { kind: $kind, prefix: $prefix, value: s.chars().take(80).collect() };
                let rest = s.strip_prefix($prefix).ok_or_else(err)?;
                if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(err());
                }
                Uuid::parse_str(rest).map(Self).map_err(|_| err())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        /// The API's schema: the text form, prefix and 32 lowercase hex digits.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "[0-9a-f]{32}$")))
                    .description(Some(concat!("A ", $kind, " id: `", $prefix, "` and 32 hex digits (a UUIDv7).")))
                    .examples([concat!($prefix, "019a2b3c4d5e7f008a1b2c3d4e5f6a7b")])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }
    };
}

prefixed_id!(
    /// A stored document.
    DocumentId, "doc_", "document"
);
prefixed_id!(
    /// A job in the queue.
    JobId, "job_", "job"
);
prefixed_id!(
    /// One worker process (or in-process worker pool), fresh at every start.
    WorkerId, "wrk_", "worker"
);
prefixed_id!(
    /// The fencing token of one attempt: every write made for the attempt must present it.
    AttemptToken, "att_", "attempt"
);
prefixed_id!(
    /// A stored extraction program that a model wrote for one document layout.
    ProgramId, "prg_", "program"
);
prefixed_id!(
    /// A tenant: the owner of documents and jobs. No request sees another tenant's.
    TenantId, "ten_", "tenant"
);
prefixed_id!(
    /// An API key (its public id; the secret itself is shown once and stored only as a hash).
    ApiKeyId, "key_", "API key"
);

prefixed_id!(
    /// A sandbox session: a jail that lives across calls, with its files, processes and Python state.
    SandboxId, "sbx_", "sandbox"
);

prefixed_id!(
    /// A batch: many jobs of one workflow submitted together, followed and read as one.
    BatchId, "bat_", "batch"
);

prefixed_id!(
    /// A webhook message: the `webhook-id` a receiver deduplicates by, the same on every attempt.
    MessageId, "msg_", "webhook message"
);
prefixed_id!(
    /// A schedule: a cron expression that enqueues a job at each of its times.
    ScheduleId, "sch_", "schedule"
);

impl TenantId {
    /// The tenant of a server without API keys (loopback only), and of everything stored before tenants
    /// existed: the nil UUID, `ten_00000000000000000000000000000000`.
    pub const DEFAULT: TenantId = TenantId(Uuid::nil());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let id = DocumentId::new();
        let text = id.to_string();
        assert!(text.starts_with("doc_"));
        assert_eq!(text.parse::<DocumentId>().unwrap(), id);
    }

    #[test]
    fn the_default_tenant_has_a_fixed_id() {
        assert_eq!(TenantId::DEFAULT.to_string(), "ten_00000000000000000000000000000000");
        assert_eq!("ten_00000000000000000000000000000000".parse::<TenantId>().unwrap(), TenantId::DEFAULT);
    }

    #[test]
    fn ids_of_another_kind_or_malformed_are_refused() {
        let job = JobId::new().to_string();
        assert!(job.parse::<DocumentId>().is_err());
        for bad in ["", "doc_", "doc_xyz", "doc_0123456789abcdef0123456789abcdeg", "../../etc/passwd"] {
            let err = bad.parse::<DocumentId>().unwrap_err();
            assert_eq!(err.kind, "document", "{bad}");
        }
    }
}
