//! The schemas of bodies that are no Rust type of their own: bytes as sent, and the upload form that
//! `routes/documents.rs` reads field by field. Handlers' `#[utoipa::path]` annotations name them; the OpenAPI
//! document (`openapi.rs`) collects them from there.

use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// A document upload as a form: the bytes as field `file` (its file name is kept, informational only). The
/// form is read field by field as it streams in (`routes/documents.rs`), so its schema is written here.
pub(crate) struct UploadForm;

impl PartialSchema for UploadForm {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .property("file", Binary::schema())
            .required("file")
            .description(Some("A document upload as a form: the bytes as field `file`."))
            .into()
    }
}

impl ToSchema for UploadForm {}

/// Bytes, as sent.
pub(crate) struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}
