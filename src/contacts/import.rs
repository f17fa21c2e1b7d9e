//! Uploads and CSV imports.
//!
//! An upload is stored in the database in 1 MiB chunks (so any node of a
//! cluster can read it, and nothing is held whole in memory). An import job
//! streams the chunks through an incremental CSV parser, validates each row,
//! and writes a batch of rows, their error rows and the checkpoint (the byte
//! offset of the next row) in one transaction. After a crash the job resumes
//! at the checkpoint's byte offset: no row is written twice or skipped.

use std::collections::{BTreeMap, HashMap};

use actix_web::web::Bytes;
use chrono::Utc;
use chrono_tz::Tz;
use futures_util::{Stream, StreamExt};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::domain::{
    AttrKind, AttrValue, Channel, ConsentStatus, Phone, SuppressionReason, attr_from_text,
    check_language, check_tag, parse_phone,
};
use super::entity::{
    attr, chunk, consent, consent_event, contact, email, import_error, member, phone, tag, upload,
};
use super::store::{attr_row, resolve_zone, search_name};
use crate::iam::domain::Email;
use crate::ids::{ContactId, JobId, ListId, TenantId, UploadId, UserId};
use crate::jobs::{JobCtx, JobFailure};

pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Rows longer than this are refused (the rest of the file still imports).
pub const MAX_ROW_BYTES: usize = 1024 * 1024;
/// A body found too large while streaming is read this much further (and
/// dropped) before the 413, so that the client sees the answer.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
/// The error report keeps this much of each failed row.
const MAX_RAW_KEPT: usize = 2000;

// ---- uploads -------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the upload is empty")]
    Empty,
    #[error("reading the upload failed: {0}")]
    Read(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Stores a body as an upload, chunk by chunk, and returns it once complete.
pub async fn store_upload<S, E>(
    db: &DatabaseConnection,
    tenant_id: TenantId,
    filename: String,
    content_type: String,
    created_by: Option<UserId>,
    max_bytes: u64,
    mut body: S,
) -> Result<upload::Model, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let id = UploadId::new();
    upload::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant_id),
        filename: Set(filename),
        content_type: Set(content_type),
        size_bytes: Set(0),
        sha256: Set(None),
        complete: Set(false),
        created_by: Set(created_by.map(|u| u.0)),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    let result = async {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_BYTES);
        let mut seq = 0i32;
        let mut total: u64 = 0;
        while let Some(part) = body.next().await {
            let part = part.map_err(|e| UploadError::Read(e.to_string()))?;
            total += part.len() as u64;
            if total > max_bytes {
                // Read (and drop) some more of the body first, so that a
                // client still sending a slightly-too-large file gets the
                // 413 rather than a reset connection.
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                let mut drained = 0u64;
                while drained < DRAIN_BYTES {
                    match tokio::time::timeout_at(deadline, body.next()).await {
                        Ok(Some(Ok(b))) => drained += b.len() as u64,
                        _ => break,
                    }
                }
                return Err(UploadError::TooLarge(max_bytes));
            }
            ctx.update(&part);
            let mut rest: &[u8] = &part;
            while !rest.is_empty() {
                let take = (CHUNK_BYTES - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == CHUNK_BYTES {
                    put_chunk(db, tenant_id, id, seq, std::mem::take(&mut buf)).await?;
                    buf.reserve(CHUNK_BYTES);
                    seq += 1;
                }
            }
        }
        if !buf.is_empty() {
            put_chunk(db, tenant_id, id, seq, buf).await?;
        }
        if total == 0 {
            return Err(UploadError::Empty);
        }
        let digest = hex::encode(ctx.finish());
        upload::Entity::update_many()
            .col_expr(
                upload::Column::SizeBytes,
                sea_orm::sea_query::Expr::value(total as i64),
            )
            .col_expr(
                upload::Column::Sha256,
                sea_orm::sea_query::Expr::value(Some(digest)),
            )
            .col_expr(
                upload::Column::Complete,
                sea_orm::sea_query::Expr::value(true),
            )
            .filter(upload::Column::Id.eq(id))
            .exec(db)
            .await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        // Nothing half-written stays behind.
        upload::Entity::delete_by_id(id).exec(db).await?;
        return Err(e);
    }
    Ok(upload::Entity::find_by_id(id)
        .one(db)
        .await?
        .expect("just written"))
}

async fn put_chunk(
    db: &DatabaseConnection,
    t: TenantId,
    id: UploadId,
    seq: i32,
    data: Vec<u8>,
) -> Result<(), DbErr> {
    chunk::ActiveModel {
        upload_id: Set(id),
        seq: Set(seq),
        tenant_id: Set(t),
        data: Set(data),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub async fn get_upload(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: UploadId,
) -> Result<Option<upload::Model>, DbErr> {
    upload::Entity::find_by_id(id)
        .filter(upload::Column::TenantId.eq(tenant_id))
        .filter(upload::Column::Complete.eq(true))
        .one(db)
        .await
}

/// The upload's bytes from `offset`, as a stream of chunks read one query
/// at a time.
pub fn upload_bytes(
    db: DatabaseConnection,
    id: UploadId,
    offset: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    let first = (offset / CHUNK_BYTES as u64) as i32;
    let skip = (offset % CHUNK_BYTES as u64) as usize;
    Box::pin(futures_util::stream::unfold(
        (db, first, skip),
        move |(db, seq, skip)| async move {
            let row = chunk::Entity::find()
                .filter(chunk::Column::UploadId.eq(id))
                .filter(chunk::Column::Seq.eq(seq))
                .one(&db)
                .await;
            match row {
                Ok(Some(c)) => {
                    let data = if skip > 0 {
                        c.data[skip.min(c.data.len())..].to_vec()
                    } else {
                        c.data
                    };
                    Some((Ok(Bytes::from(data)), (db, seq + 1, 0)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), (db, seq + 1, 0))),
            }
        },
    ))
}

/// How a read of the next record ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A record, in the caller's buffer.
    Row,
    /// A record longer than [`MAX_ROW_BYTES`]: read through but not kept;
    /// its start, shortened, for the error report.
    TooLong(String),
    /// The end of the file.
    End,
}

/// An incremental CSV reader with bounded memory: records are parsed as the
/// bytes arrive (csv-core), and a record longer than [`MAX_ROW_BYTES`] is
/// skipped over instead of being buffered whole, so one enormous line (or a
/// quote that never closes) cannot make a job hold the file in memory.
/// A UTF-8 byte-order mark at the start is skipped; empty lines are ignored.
pub struct Records<R> {
    rdr: R,
    core: csv_core::Reader,
    pos: u64,
    fields: Vec<u8>,
    ends: Vec<usize>,
}

impl<R: tokio::io::AsyncBufRead + Unpin> Records<R> {
    pub fn new(rdr: R) -> Self {
        Self {
            rdr,
            core: csv_core::Reader::new(),
            pos: 0,
            fields: vec![0; 4096],
            ends: vec![0; 64],
        }
    }

    /// Bytes consumed so far: the offset (from where reading began) at
    /// which the next record starts.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads the next record into `rec`.
    pub async fn read(&mut self, rec: &mut csv_async::ByteRecord) -> std::io::Result<Read> {
        use csv_core::ReadRecordResult::*;
        use tokio::io::AsyncBufReadExt;
        rec.clear();
        let (mut outlen, mut endlen) = (0usize, 0usize);
        let mut too_long: Option<String> = None;
        loop {
            let (res, nin, nout, nend) = {
                let input = self.rdr.fill_buf().await?;
                self.core
                    .read_record(input, &mut self.fields[outlen..], &mut self.ends[endlen..])
            };
            self.rdr.consume(nin);
            self.pos += nin as u64;
            outlen += nout;
            endlen += nend;
            match res {
                InputEmpty => {}
                OutputFull | OutputEndsFull => {
                    if too_long.is_none() && outlen + endlen < MAX_ROW_BYTES {
                        if res == OutputFull {
                            let n = (self.fields.len() * 2).min(MAX_ROW_BYTES + 1);
                            self.fields.resize(n, 0);
                        } else {
                            let n = self.ends.len() * 2;
                            self.ends.resize(n, 0);
                        }
                    } else {
                        // Too long: keep its start for the report, drop the rest.
                        if too_long.is_none() {
                            too_long =
                                Some(partial_raw(&self.fields[..outlen], &self.ends[..endlen]));
                        }
                        outlen = 0;
                        endlen = 0;
                    }
                }
                Record => {
                    if let Some(p) = too_long {
                        return Ok(Read::TooLong(p));
                    }
                    if outlen + endlen > MAX_ROW_BYTES {
                        return Ok(Read::TooLong(partial_raw(
                            &self.fields[..outlen],
                            &self.ends[..endlen],
                        )));
                    }
                    let mut start = 0;
                    for &end in &self.ends[..endlen] {
                        rec.push_field(&self.fields[start..end]);
                        start = end;
                    }
                    return Ok(Read::Row);
                }
                End => return Ok(Read::End),
            }
        }
    }
}

/// The start of a record too long to keep, as a shortened CSV line.
fn partial_raw(fields: &[u8], ends: &[usize]) -> String {
    let mut rec = csv_async::ByteRecord::new();
    let mut start = 0;
    for &end in ends {
        if end > fields.len() || start > MAX_RAW_KEPT {
            break;
        }
        rec.push_field(&fields[start..end]);
        start = end;
    }
    if start < fields.len() && start <= MAX_RAW_KEPT {
        rec.push_field(&fields[start..fields.len().min(start + MAX_RAW_KEPT + 1)]);
    }
    let mut s = raw_line(&rec, Encoding::Utf8);
    if !s.ends_with('…') {
        s.push('…');
    }
    s
}

type UploadStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The records of an upload from a byte offset.
pub fn records(
    db: DatabaseConnection,
    id: UploadId,
    offset: u64,
) -> Records<tokio_util::io::StreamReader<UploadStream, Bytes>> {
    let stream: UploadStream = Box::pin(upload_bytes(db, id, offset));
    Records::new(tokio_util::io::StreamReader::new(stream))
}

/// Whether the start of a file is binary rather than text: a NUL byte
/// (images, archives, spreadsheets, UTF-16 text all have them), or more
/// than 1% control characters other than tab, line breaks and form feed.
pub fn looks_binary(head: &[u8]) -> bool {
    if head.contains(&0) {
        return true;
    }
    let control = head
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c)) || b == 0x7f)
        .count();
    control * 100 > head.len()
}

/// The message for a file that is not text.
pub const NOT_CSV: &str = "the file is not CSV text (it looks like binary data: an image, a \
    spreadsheet workbook or UTF-16 text?); save it as CSV (UTF-8 or Latin-1)";

/// Checks that an upload looks like text, from its first 64 KiB.
pub async fn check_text(db: &DatabaseConnection, id: UploadId) -> Result<(), FileError> {
    let first = chunk::Entity::find()
        .filter(chunk::Column::UploadId.eq(id))
        .filter(chunk::Column::Seq.eq(0))
        .one(db)
        .await?;
    match first {
        Some(c) if looks_binary(&c.data[..c.data.len().min(64 * 1024)]) => {
            Err(FileError::invalid("upload", NOT_CSV))
        }
        Some(_) => Ok(()),
        None => Err(FileError::invalid("upload", "the file is empty")),
    }
}

/// Why a file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file or the mapping is wrong: `path` is `upload`, `mapping` or
    /// `mapping.<field>`.
    #[error("{message}")]
    Invalid { path: String, message: String },
    #[error("reading the upload: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl FileError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        FileError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<FileError> for JobFailure {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Invalid { message, .. } => JobFailure::Fatal(message),
            FileError::Io(io) => JobFailure::Db(DbErr::Custom(format!("reading the upload: {io}"))),
            FileError::Db(d) => JobFailure::Db(d),
        }
    }
}

// ---- mapping -------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Utf8,
    /// ISO 8859-1 (Latin-1), as older spreadsheets export.
    Latin1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DedupeKey {
    ExternalId,
    Phone,
    Email,
}

/// What a contact import does.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    pub upload_id: UploadId,
    /// Contact field to CSV column header, e.g. `{"external_id": "Customer ID",
    /// "phone": "Mobile", "attributes.plan": "Plan"}`. Fields: external_id,
    /// first_name, last_name, name (split at the last space), phone, phone_2,
    /// phone_3, phones (several, separated by `;`), email, email_2, email_3,
    /// emails (several, separated by `;`), timezone, language, tags,
    /// attributes.<key>, consent.voice, consent.sms, consent.email, and id
    /// (a Switchboard contact id, as the export writes it: the row updates
    /// that contact when it exists in this tenant). Empty: matched from the
    /// headers (field names as the export writes them first, then common
    /// names such as "Mobile" or "E-mail").
    ///
    /// Cells are read as the export writes them: a leading apostrophe that
    /// neutralised a formula (`'=...`, `'+...`, `'-...`, `'@...`) is removed.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// How an existing contact is recognised, in order. External ids are
    /// unique: a row whose external id belongs to another contact than the
    /// one it matched (or, without `external_id` here, to any contact) fails.
    #[serde(default = "default_dedupe")]
    pub dedupe_by: Vec<DedupeKey>,
    /// Separates several tags in one cell.
    #[serde(default = "default_separator")]
    pub tag_separator: String,
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// Add every imported contact to this list.
    pub list_id: Option<ListId>,
}

fn default_dedupe() -> Vec<DedupeKey> {
    vec![DedupeKey::ExternalId, DedupeKey::Phone, DedupeKey::Email]
}
fn default_separator() -> String {
    ";".into()
}
fn default_encoding() -> Encoding {
    Encoding::Utf8
}

/// Fields a column may map to (attributes and consents aside).
pub const FIELDS: &[&str] = &[
    "id",
    "external_id",
    "first_name",
    "last_name",
    "name",
    "phone",
    "phone_2",
    "phone_3",
    "phones",
    "email",
    "email_2",
    "email_3",
    "emails",
    "timezone",
    "language",
    "tags",
];

fn normalize_header(h: &str) -> String {
    let mut out = String::new();
    for c in h.trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// Guesses a mapping from header names: exact field names first (as the
/// export writes them: `external_id`, `phones`, `attributes.plan`,
/// `consent_sms`...), then common names people give columns. `id` is read as
/// a Switchboard contact id only next to an `external_id` column (an export);
/// alone, it is taken for the external id.
pub fn suggest_mapping(
    headers: &[String],
    attributes: &HashMap<String, AttrKind>,
) -> BTreeMap<String, String> {
    let aliases: &[(&str, &[&str])] = &[
        (
            "external_id",
            &["external_id", "id", "customer_id", "contact_id", "crm_id"],
        ),
        (
            "first_name",
            &["first_name", "firstname", "given_name", "first"],
        ),
        (
            "last_name",
            &["last_name", "lastname", "surname", "family_name", "last"],
        ),
        ("name", &["name", "full_name", "fullname", "contact_name"]),
        (
            "phone",
            &[
                "phone",
                "mobile",
                "phone_number",
                "cell",
                "telephone",
                "tel",
                "mobile_phone",
            ],
        ),
        (
            "phone_2",
            &["phone_2", "home_phone", "work_phone", "landline"],
        ),
        ("phones", &["phones", "phone_numbers"]),
        ("email", &["email", "e_mail", "email_address", "mail"]),
        ("email_2", &["email_2", "work_email"]),
        ("emails", &["emails", "email_addresses"]),
        ("timezone", &["timezone", "time_zone", "tz"]),
        ("language", &["language", "lang", "locale"]),
        ("tags", &["tags", "tag", "labels"]),
        ("consent.sms", &["sms_consent", "sms_opt_in", "consent_sms"]),
        (
            "consent.email",
            &["email_consent", "email_opt_in", "consent_email"],
        ),
        (
            "consent.voice",
            &["voice_consent", "call_consent", "consent_voice"],
        ),
    ];
    let lower: Vec<String> = headers.iter().map(|h| h.trim().to_lowercase()).collect();
    let exported = lower.iter().any(|h| h == "id") && lower.iter().any(|h| h == "external_id");
    let mut m = BTreeMap::new();
    let mut used = vec![false; headers.len()];
    // Exact field names.
    for (i, h) in lower.iter().enumerate() {
        let field = if h == "id" {
            exported.then(|| "id".to_owned())
        } else if let Some(k) = h.strip_prefix("attributes.") {
            attributes.contains_key(k).then(|| h.clone())
        } else if let Some(c) = h.strip_prefix("consent.") {
            Channel::parse(c).map(|_| h.clone())
        } else {
            FIELDS.contains(&h.as_str()).then(|| h.clone())
        };
        if let Some(f) = field
            && !m.contains_key(&f)
        {
            m.insert(f, headers[i].clone());
            used[i] = true;
        }
    }
    // Common names, and attribute keys.
    for (i, h) in headers.iter().enumerate() {
        if used[i] {
            continue;
        }
        let n = normalize_header(h);
        if let Some((field, _)) = aliases
            .iter()
            .find(|(_, names)| names.contains(&n.as_str()))
        {
            if !m.contains_key(*field) {
                m.insert((*field).to_owned(), h.clone());
                used[i] = true;
            }
        } else if attributes.contains_key(&n) {
            m.entry(format!("attributes.{n}"))
                .or_insert_with(|| h.clone());
        }
    }
    m
}

/// A mapping resolved against the header: field to column index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub columns: usize,
    pub fields: Vec<(String, usize)>,
}

/// A problem with the header or the mapping, which fails the whole file:
/// `path` is `upload` (the file), `mapping` or `mapping.<field>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<PlanError> for FileError {
    fn from(e: PlanError) -> Self {
        FileError::Invalid {
            path: e.path,
            message: e.message,
        }
    }
}

fn plan_err(path: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        path: path.into(),
        message: message.into(),
    }
}

/// Checks the header and the mapping; a problem here fails the whole file.
pub fn plan(
    headers: &[String],
    mapping: &BTreeMap<String, String>,
    attributes: &HashMap<String, AttrKind>,
) -> Result<Plan, PlanError> {
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(plan_err("upload", "the first row (the header) is empty"));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let key = h.trim().to_lowercase();
        if key.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(key, i) {
            return Err(plan_err(
                "upload",
                format!(
                    "the header has column {:?} twice (columns {} and {})",
                    h.trim(),
                    first + 1,
                    i + 1
                ),
            ));
        }
    }
    if mapping.is_empty() {
        return Err(plan_err(
            "mapping",
            "no column could be matched to a contact field; give a mapping",
        ));
    }
    let mut fields = Vec::new();
    for (field, column) in mapping {
        let path = format!("mapping.{}", field.chars().take(100).collect::<String>());
        let ok = FIELDS.contains(&field.as_str())
            || field
                .strip_prefix("attributes.")
                .is_some_and(|k| attributes.contains_key(k))
            || field
                .strip_prefix("consent.")
                .is_some_and(|c| Channel::parse(c).is_some());
        if !ok {
            return Err(plan_err(
                path,
                match field.strip_prefix("attributes.") {
                    Some(k) => format!("attribute {k:?} is not defined (define it first)"),
                    None => format!("{field:?} is not a contact field"),
                },
            ));
        }
        let idx = headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(column.trim()))
            .ok_or_else(|| plan_err(path, format!("the file has no column {column:?}")))?;
        fields.push((field.clone(), idx));
    }
    if !fields.iter().any(|(f, _)| {
        matches!(
            f.as_str(),
            "first_name"
                | "last_name"
                | "name"
                | "phone"
                | "phones"
                | "email"
                | "emails"
                | "external_id"
                | "id"
        )
    }) {
        return Err(plan_err(
            "mapping",
            "the mapping needs at least a name, phone, email or external_id column",
        ));
    }
    // In the file's order, so that a row's errors read left to right.
    fields.sort_by_key(|(_, idx)| *idx);
    Ok(Plan {
        columns: headers.len(),
        fields,
    })
}

// ---- rows ----------------------------------------------------------------------

/// One valid row, ready to write.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// A Switchboard contact id (the `id` column of an export).
    pub contact_id: Option<ContactId>,
    pub external_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phones: Vec<Phone>,
    pub emails: Vec<Email>,
    pub timezone: Option<Tz>,
    pub language: Option<String>,
    pub tags: Vec<String>,
    pub attributes: Vec<(String, AttrValue)>,
    pub consents: Vec<(Channel, ConsentStatus)>,
}

fn decode(bytes: &[u8], enc: Encoding) -> Option<String> {
    match enc {
        Encoding::Utf8 => std::str::from_utf8(bytes).ok().map(str::to_owned),
        Encoding::Latin1 => Some(bytes.iter().map(|&b| b as char).collect()),
    }
}

/// Undoes the export's formula neutralisation: `'=x` is read as `=x` (the
/// apostrophe only ever precedes `=`, `+`, `-`, `@`, tab or carriage return).
fn unneutralize(v: &str) -> &str {
    match v.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => v,
    }
}

/// A hint for rows whose fields hold line breaks: usually a quote that
/// opened a field and never closed, swallowing the lines after it.
const QUOTE_HINT: &str = "is a closing quote missing?";

/// Validates one record; `Err` lists every problem of the row.
pub fn read_row(
    rec: &csv_async::ByteRecord,
    plan: &Plan,
    p: &ImportParams,
    attributes: &HashMap<String, AttrKind>,
    default_region: &str,
) -> Result<Row, Vec<String>> {
    if rec.as_slice().len() > MAX_ROW_BYTES {
        return Err(vec![format!(
            "the row is longer than {} bytes",
            MAX_ROW_BYTES
        )]);
    }
    if rec.len() != plan.columns {
        let spans = rec.iter().any(|f| f.contains(&b'\n') || f.contains(&b'\r'));
        return Err(vec![if spans {
            format!(
                "the row has {} fields, the header has {} (a quoted field spans several lines: {QUOTE_HINT})",
                rec.len(),
                plan.columns
            )
        } else {
            format!(
                "the row has {} fields, the header has {}",
                rec.len(),
                plan.columns
            )
        }]);
    }
    let mut errs = Vec::new();
    let mut row = Row::default();
    for (field, idx) in &plan.fields {
        let Some(raw) = decode(&rec[*idx], p.encoding) else {
            errs.push(format!(
                "{field}: not valid UTF-8 (for a Latin-1 file, set encoding to latin1)"
            ));
            continue;
        };
        let v = unneutralize(raw.trim());
        if v.trim().is_empty() {
            continue;
        }
        // Text attributes may hold line breaks (a quoted multi-line cell);
        // nothing else may.
        let multiline = field.starts_with("attributes.");
        if v.contains(['\n', '\r']) && !multiline {
            errs.push(format!("{field}: contains a line break ({QUOTE_HINT})"));
            continue;
        }
        if v.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            errs.push(format!("{field}: contains control characters"));
            continue;
        }
        match field.as_str() {
            "id" => match uuid::Uuid::parse_str(v) {
                Ok(u) => row.contact_id = Some(ContactId(u)),
                Err(_) => errs.push(format!("id: {v:?} is not a contact id")),
            },
            "phones" => {
                for part in v.split(';').map(str::trim).filter(|x| !x.is_empty()) {
                    match parse_phone(part, default_region) {
                        Ok(ph) => row.phones.push(ph),
                        Err(e) => errs.push(format!("phones: {part:?} {e}")),
                    }
                }
            }
            "emails" => {
                for part in v.split(';').map(str::trim).filter(|x| !x.is_empty()) {
                    match Email::parse(part) {
                        Ok(e) => row.emails.push(e),
                        Err(e) => errs.push(format!("emails: {part:?} {e}")),
                    }
                }
            }
            "external_id" => {
                if v.chars().count() > 200 {
                    errs.push("external_id: longer than 200 characters".into());
                } else {
                    row.external_id = Some(v.to_owned());
                }
            }
            "first_name" | "last_name" | "name" if v.chars().count() > 200 => {
                errs.push(format!("{field}: longer than 200 characters"))
            }
            "first_name" => row.first_name = Some(v.to_owned()),
            "last_name" => row.last_name = Some(v.to_owned()),
            "name" => match v.rsplit_once(' ') {
                Some((first, last)) => {
                    row.first_name
                        .get_or_insert_with(|| first.trim().to_owned());
                    row.last_name.get_or_insert_with(|| last.trim().to_owned());
                }
                None => {
                    row.first_name.get_or_insert_with(|| v.to_owned());
                }
            },
            "phone" | "phone_2" | "phone_3" => match parse_phone(v, default_region) {
                Ok(ph) => row.phones.push(ph),
                Err(e) => errs.push(format!("{field}: {v:?} {e}")),
            },
            "email" | "email_2" | "email_3" => match Email::parse(v) {
                Ok(e) => row.emails.push(e),
                Err(e) => errs.push(format!("{field}: {v:?} {e}")),
            },
            "timezone" => match v.parse::<Tz>() {
                Ok(tz) => row.timezone = Some(tz),
                Err(_) => errs.push(format!("timezone: {v:?} is not an IANA time zone")),
            },
            "language" => match check_language(v) {
                Ok(l) => row.language = Some(l),
                Err(e) => errs.push(format!("language: {e}")),
            },
            "tags" => {
                for t in v
                    .split(p.tag_separator.as_str())
                    .filter(|t| !t.trim().is_empty())
                {
                    match check_tag(t) {
                        Ok(t) => row.tags.push(t),
                        Err(e) => errs.push(format!("tags: {e}")),
                    }
                }
            }
            f => {
                if let Some(key) = f.strip_prefix("attributes.") {
                    match attr_from_text(attributes[key], v) {
                        Ok(val) => row.attributes.push((key.to_owned(), val)),
                        Err(e) => errs.push(format!("{f}: {e}")),
                    }
                } else if let Some(ch) = f.strip_prefix("consent.").and_then(Channel::parse) {
                    match v.to_ascii_lowercase().as_str() {
                        "opted_in" | "yes" | "y" | "true" | "1" | "in" => {
                            row.consents.push((ch, ConsentStatus::OptedIn))
                        }
                        "opted_out" | "no" | "n" | "false" | "0" | "out" => {
                            row.consents.push((ch, ConsentStatus::OptedOut))
                        }
                        _ => errs.push(format!("{f}: {v:?} is not yes/no")),
                    }
                }
            }
        }
    }
    if errs.is_empty() {
        let empty = row.contact_id.is_none()
            && row.external_id.is_none()
            && row.first_name.is_none()
            && row.last_name.is_none()
            && row.phones.is_empty()
            && row.emails.is_empty();
        if empty {
            errs.push("the row has no name, phone, email or external id".into());
        }
    }
    if errs.is_empty() { Ok(row) } else { Err(errs) }
}

/// A failed row as one CSV line, for the error report (Latin-1 files are
/// transcoded; bytes that are not UTF-8 in a UTF-8 file show as U+FFFD).
fn raw_line(rec: &csv_async::ByteRecord, enc: Encoding) -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let fields: Vec<String> = rec
        .iter()
        .map(|f| match enc {
            Encoding::Utf8 => String::from_utf8_lossy(f).into_owned(),
            Encoding::Latin1 => f.iter().map(|&b| b as char).collect(),
        })
        .collect();
    let _ = w.write_record(&fields);
    let bytes = w.into_inner().unwrap_or_default();
    let mut s = String::from_utf8_lossy(&bytes).trim_end().to_owned();
    if s.len() > MAX_RAW_KEPT {
        let mut cut = MAX_RAW_KEPT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

// ---- the job -------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    /// Byte offset of the next record to read.
    offset: u64,
    /// Data rows consumed (ok and failed).
    rows: u64,
    failed: u64,
    created: u64,
    updated: u64,
    plan: Option<Plan>,
    headers: Vec<String>,
}

fn fatal(msg: impl Into<String>) -> JobFailure {
    JobFailure::Fatal(msg.into())
}

fn is_blank(rec: &csv_async::ByteRecord) -> bool {
    rec.len() == 1 && rec[0].is_empty()
}

/// Counts the data rows of an upload (a fast pass, for the progress total).
async fn count_rows(db: DatabaseConnection, id: UploadId, from: u64) -> Result<u64, FileError> {
    let mut rdr = records(db, id, from);
    let mut rec = csv_async::ByteRecord::new();
    let mut n = 0;
    loop {
        match rdr.read(&mut rec).await? {
            Read::End => return Ok(n),
            Read::Row if is_blank(&rec) => {}
            Read::Row | Read::TooLong(_) => n += 1,
        }
    }
}

/// Reads the header of an upload, after checking that the file is text;
/// returns the header fields and the offset of the first data row.
pub async fn read_header(
    db: &DatabaseConnection,
    id: UploadId,
    enc: Encoding,
) -> Result<(Vec<String>, u64), FileError> {
    check_text(db, id).await?;
    let mut rdr = records(db.clone(), id, 0);
    let mut rec = csv_async::ByteRecord::new();
    match rdr.read(&mut rec).await? {
        Read::Row => {}
        Read::End => return Err(FileError::invalid("upload", "the file is empty")),
        Read::TooLong(_) => {
            return Err(FileError::invalid(
                "upload",
                format!("the header is longer than {MAX_ROW_BYTES} bytes: is this a CSV file?"),
            ));
        }
    }
    let mut headers = Vec::new();
    for (i, f) in rec.iter().enumerate() {
        let h = decode(f, enc).ok_or_else(|| {
            FileError::invalid(
                "upload",
                "the header is not valid UTF-8 (for a Latin-1 file, set encoding to latin1)",
            )
        })?;
        if h.chars().count() > 200 {
            return Err(FileError::invalid(
                "upload",
                format!(
                    "header column {} is longer than 200 characters: is this a CSV file?",
                    i + 1
                ),
            ));
        }
        headers.push(h.trim().to_owned());
    }
    Ok((headers, rdr.position()))
}

/// Checks an import's file and mapping the way its job reads them (so that
/// mistakes show when the import is asked for): returns the plan, the
/// header and the offset of the first data row.
pub async fn prepare(
    db: &DatabaseConnection,
    tenant_id: TenantId,
    p: &ImportParams,
) -> Result<(Plan, Vec<String>, u64), FileError> {
    let attributes = super::store::attribute_kinds(db, tenant_id).await?;
    let (headers, after) = read_header(db, p.upload_id, p.encoding).await?;
    let mapping = if p.mapping.is_empty() {
        suggest_mapping(&headers, &attributes)
    } else {
        p.mapping.clone()
    };
    let plan = plan(&headers, &mapping, &attributes)?;
    Ok((plan, headers, after))
}

/// The first `n` records of an upload (the header first), for people to
/// look at: cells shortened to 200 characters, decoded as UTF-8 or, when
/// that fails, as Latin-1 (then the second value is `Latin1`).
pub async fn preview(
    db: &DatabaseConnection,
    id: UploadId,
    n: usize,
) -> Result<(Vec<Vec<String>>, Encoding), FileError> {
    check_text(db, id).await?;
    let mut rdr = records(db.clone(), id, 0);
    let mut rec = csv_async::ByteRecord::new();
    let mut rows = Vec::new();
    let mut enc = Encoding::Utf8;
    while rows.len() < n {
        match rdr.read(&mut rec).await? {
            Read::End => break,
            Read::Row if is_blank(&rec) => {}
            Read::Row => rows.push(
                rec.iter()
                    .map(|f| {
                        let s = match std::str::from_utf8(f) {
                            Ok(s) => s.to_owned(),
                            Err(_) => {
                                enc = Encoding::Latin1;
                                f.iter().map(|&b| b as char).collect()
                            }
                        };
                        s.trim().chars().take(200).collect()
                    })
                    .collect(),
            ),
            Read::TooLong(raw) => rows.push(vec![raw.chars().take(200).collect()]),
        }
    }
    if rows.is_empty() {
        return Err(FileError::invalid("upload", "the file is empty"));
    }
    Ok((rows, enc))
}

pub async fn run_contact_import(ctx: &JobCtx) -> Result<Value, JobFailure> {
    let p: ImportParams = ctx.params()?;
    let db = ctx.db().clone();
    let tenant_id = ctx.tenant_id();
    let tenant = crate::iam::store::tenant(&db, tenant_id)
        .await
        .map_err(|e| fatal(e.to_string()))?;
    let region = tenant.default_region.clone();
    let up = get_upload(&db, tenant_id, p.upload_id)
        .await?
        .ok_or_else(|| fatal("the upload does not exist"))?;
    if let Some(l) = p.list_id {
        super::lists::get(&db, tenant_id, l)
            .await?
            .ok_or_else(|| fatal("the list does not exist"))?;
    }
    let attributes = super::store::attribute_kinds(&db, tenant_id).await?;
    let mut cp: Checkpoint = ctx
        .checkpoint()
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let plan = match cp.plan.clone() {
        Some(plan) => plan,
        None => {
            let (plan, headers, after) = prepare(&db, tenant_id, &p).await?;
            let total = count_rows(db.clone(), up.id, after).await?;
            ctx.set_total(total).await?;
            cp = Checkpoint {
                offset: after,
                plan: Some(plan.clone()),
                headers,
                ..Default::default()
            };
            let txn = crate::db::begin_write(&db).await?;
            ctx.save_progress(&txn, 0, serde_json::to_value(&cp).expect("serialises"))
                .await?;
            txn.commit().await?;
            plan
        }
    };
    // Reading and checking rows (CPU: CSV, phone numbers, emails) runs in its
    // own task, one batch ahead of the writes, so the two overlap: the next
    // batch is parsed while the database writes this one. At most two
    // batches wait, so memory stays bounded.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Batch, FileError>>(1);
    let reader = tokio::spawn(read_batches(
        records(db.clone(), up.id, cp.offset),
        BatchReader {
            base: cp.offset,
            rows_before: cp.rows,
            batch_size: ctx.chunk_size() as usize,
            plan,
            params: p.clone(),
            attributes,
            region,
        },
        tx,
    ));
    let _stop_reader = AbortOnDrop(reader.abort_handle());
    loop {
        if ctx.should_stop() {
            return Err(JobFailure::Interrupted);
        }
        let Some(batch) = rx.recv().await else {
            break;
        };
        let Batch {
            entries,
            next_offset,
        } = batch?;
        let consumed = entries.len() as u64;
        let txn = crate::db::begin_write(&db).await?;
        let stats = write_batch(&txn, tenant_id, ctx.id(), &p, entries).await?;
        cp.rows += consumed;
        cp.failed += stats.failed;
        cp.created += stats.created;
        cp.updated += stats.updated;
        cp.offset = next_offset;
        ctx.save_progress(
            &txn,
            cp.rows,
            serde_json::to_value(&cp).expect("serialises"),
        )
        .await?;
        txn.commit().await?;
    }
    Ok(json!({
        "rows": cp.rows,
        "created": cp.created,
        "updated": cp.updated,
        "failed": cp.failed,
    }))
}

/// A batch of rows read and checked, and the byte offset after its last row
/// (the checkpoint once it is written).
struct Batch {
    entries: Vec<Entry>,
    next_offset: u64,
}

/// What the reading task needs to number and check rows.
struct BatchReader {
    base: u64,
    rows_before: u64,
    batch_size: usize,
    plan: Plan,
    params: ImportParams,
    attributes: HashMap<String, AttrKind>,
    region: String,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the upload from the checkpoint in batches of checked rows and sends
/// them on; stops at the end of the file, at a file error (sent on), or when
/// the receiver is gone.
async fn read_batches<R: tokio::io::AsyncBufRead + Unpin>(
    mut rdr: Records<R>,
    r: BatchReader,
    tx: tokio::sync::mpsc::Sender<Result<Batch, FileError>>,
) {
    let mut rec = csv_async::ByteRecord::new();
    let mut rows = r.rows_before;
    loop {
        let mut entries: Vec<Entry> = Vec::with_capacity(r.batch_size);
        while entries.len() < r.batch_size {
            let n = rows + entries.len() as u64 + 1;
            let read = match rdr.read(&mut rec).await {
                Ok(read) => read,
                Err(e) => {
                    let _ = tx.send(Err(FileError::from(e))).await;
                    return;
                }
            };
            match read {
                Read::End => break,
                Read::TooLong(raw) => entries.push(Entry {
                    n,
                    raw,
                    row: Err(vec![format!(
                        "the row is longer than {MAX_ROW_BYTES} bytes"
                    )]),
                }),
                Read::Row if is_blank(&rec) => {}
                Read::Row => {
                    let row = read_row(&rec, &r.plan, &r.params, &r.attributes, &r.region);
                    entries.push(Entry {
                        n,
                        // For the error report (writing can refuse a row too).
                        raw: raw_line(&rec, r.params.encoding),
                        row,
                    })
                }
            }
        }
        if entries.is_empty() {
            return;
        }
        rows += entries.len() as u64;
        let next_offset = r.base + rdr.position();
        if tx
            .send(Ok(Batch {
                entries,
                next_offset,
            }))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// One data row of a batch: its number (1 is the first row after the
/// header; blank lines are not rows), the row as a CSV line, and the row
/// read or why not.
struct Entry {
    n: u64,
    raw: String,
    row: Result<Row, Vec<String>>,
}

/// A contact created in this batch: its index in the new contacts, its
/// phones, emails and tags so far.
struct Held {
    index: usize,
    phones: Vec<String>,
    emails: Vec<String>,
    tags: Vec<String>,
}

/// The phones, emails and tags a batch adds.
#[derive(Default)]
struct NewParts {
    phones: Vec<phone::ActiveModel>,
    emails: Vec<email::ActiveModel>,
    tags: Vec<tag::ActiveModel>,
}

impl Held {
    /// Adds the row's phones, emails and tags that this new contact does not
    /// hold yet (in the row's order, after the ones it has).
    fn add_parts(&mut self, t: TenantId, id: ContactId, row: &Row, out: &mut NewParts) {
        for ph in &row.phones {
            if !self.phones.contains(&ph.e164) {
                out.phones
                    .push(phone_row(t, id, &ph.e164, self.phones.len() as i32));
                self.phones.push(ph.e164.clone());
            }
        }
        for e in &row.emails {
            if !self.emails.iter().any(|x| x == e.as_str()) {
                out.emails
                    .push(email_row(t, id, e.as_str(), self.emails.len() as i32));
                self.emails.push(e.as_str().to_owned());
            }
        }
        for name in &row.tags {
            if !self.tags.contains(name) {
                self.tags.push(name.clone());
                out.tags.push(tag::ActiveModel {
                    contact_id: Set(id),
                    tag: Set(name.clone()),
                    tenant_id: Set(t),
                });
            }
        }
    }
}

#[derive(Default)]
struct BatchStats {
    created: u64,
    updated: u64,
    failed: u64,
}

fn error_row(
    tenant_id: TenantId,
    job_id: JobId,
    n: u64,
    raw: String,
    msgs: Vec<String>,
) -> import_error::ActiveModel {
    import_error::ActiveModel {
        id: sea_orm::NotSet,
        tenant_id: Set(tenant_id),
        job_id: Set(job_id),
        row_number: Set(n as i64),
        raw: Set(raw),
        errors: Set(json!(msgs)),
    }
}

/// Writes one batch: failed rows to the error report, valid rows as new or
/// updated contacts (deduplicated against the database and the batch).
/// Later rows win: a contact given twice ends as its last row says,
/// whichever batch each row fell in.
async fn write_batch(
    txn: &impl ConnectionTrait,
    tenant_id: TenantId,
    job_id: JobId,
    p: &ImportParams,
    batch: Vec<Entry>,
) -> Result<BatchStats, DbErr> {
    // PostgreSQL caches a generic plan for these lookups after a few
    // batches; planned while the tables were small it scans them whole, and
    // an import into a fresh tenant slows down as it grows them. Plan each
    // batch's lookups for the tables as they are.
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
            .await?;
    }
    let mut stats = BatchStats::default();
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    for e in batch {
        match e.row {
            Ok(row) => rows.push((e.n, e.raw, row)),
            Err(msgs) => errors.push(error_row(tenant_id, job_id, e.n, e.raw, msgs)),
        }
    }

    // Existing contacts for the batch's keys, one query per key kind. External
    // ids are always looked up: they must stay unique.
    let ids: Vec<ContactId> = rows.iter().filter_map(|r| r.2.contact_id).collect();
    let ext: Vec<String> = rows
        .iter()
        .filter_map(|r| r.2.external_id.clone())
        .collect();
    let phones: Vec<String> = rows
        .iter()
        .flat_map(|r| r.2.phones.iter().map(|p| p.e164.clone()))
        .collect();
    let emails: Vec<String> = rows
        .iter()
        .flat_map(|r| r.2.emails.iter().map(|e| e.as_str().to_owned()))
        .collect();
    let mut known: std::collections::HashSet<ContactId> = Default::default();
    // The external id of every contact a row may match.
    let mut ext_of: HashMap<ContactId, Option<String>> = HashMap::new();
    let mut by_ext: HashMap<String, ContactId> = HashMap::new();
    let mut by_phone: HashMap<String, Vec<ContactId>> = HashMap::new();
    let mut by_email: HashMap<String, Vec<ContactId>> = HashMap::new();
    if !ids.is_empty() {
        for c in contact::Entity::find()
            .filter(contact::Column::TenantId.eq(tenant_id))
            .filter(contact::Column::Id.is_in(ids))
            .all(txn)
            .await?
        {
            known.insert(c.id);
            ext_of.insert(c.id, c.external_id);
        }
    }
    if !ext.is_empty() {
        for c in contact::Entity::find()
            .filter(contact::Column::TenantId.eq(tenant_id))
            .filter(contact::Column::ExternalId.is_in(ext))
            .all(txn)
            .await?
        {
            if let Some(e) = c.external_id.clone() {
                by_ext.insert(e, c.id);
            }
            ext_of.insert(c.id, c.external_id);
        }
    }
    if p.dedupe_by.contains(&DedupeKey::Phone) && !phones.is_empty() {
        for ph in phone::Entity::find()
            .filter(phone::Column::TenantId.eq(tenant_id))
            .filter(phone::Column::E164.is_in(phones))
            .order_by_asc(phone::Column::Id)
            .all(txn)
            .await?
        {
            let ids = by_phone.entry(ph.e164).or_default();
            if !ids.contains(&ph.contact_id) {
                ids.push(ph.contact_id);
            }
        }
    }
    if p.dedupe_by.contains(&DedupeKey::Email) && !emails.is_empty() {
        for em in email::Entity::find()
            .filter(email::Column::TenantId.eq(tenant_id))
            .filter(email::Column::Email.is_in(emails))
            .order_by_asc(email::Column::Id)
            .all(txn)
            .await?
        {
            let ids = by_email.entry(em.email).or_default();
            if !ids.contains(&em.contact_id) {
                ids.push(em.contact_id);
            }
        }
    }
    let unknown: Vec<ContactId> = by_phone
        .values()
        .chain(by_email.values())
        .flatten()
        .filter(|id| !ext_of.contains_key(id))
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for part in unknown.chunks(1000) {
        for c in contact::Entity::find()
            .filter(contact::Column::TenantId.eq(tenant_id))
            .filter(contact::Column::Id.is_in(part.to_vec()))
            .all(txn)
            .await?
        {
            ext_of.insert(c.id, c.external_id);
        }
    }

    let ext_key = p.dedupe_by.contains(&DedupeKey::ExternalId);
    let now = Utc::now();
    let mut new_contacts: Vec<contact::ActiveModel> = Vec::new();
    let mut parts = NewParts::default();
    let mut new_attrs = Vec::new();
    let mut new_consents: Vec<(ContactId, Channel, ConsentStatus)> = Vec::new();
    let mut members = Vec::new();
    // Contacts created in this batch, with what they already hold.
    let mut fresh: HashMap<ContactId, Held> = HashMap::new();
    for (n, raw, row) in rows {
        // With external ids among the keys, a contact with another external
        // id is another person, whatever phone or email they share.
        let compatible = |id: &ContactId| match (&row.external_id, ext_of.get(id)) {
            (Some(e), Some(Some(cur))) => cur == e,
            _ => true,
        };
        let existing = row.contact_id.filter(|c| known.contains(c)).or_else(|| {
            p.dedupe_by.iter().find_map(|k| match k {
                DedupeKey::ExternalId => row
                    .external_id
                    .as_ref()
                    .and_then(|e| by_ext.get(e).copied()),
                DedupeKey::Phone => row
                    .phones
                    .iter()
                    .filter_map(|ph| by_phone.get(&ph.e164))
                    .flatten()
                    .find(|id| !ext_key || compatible(id))
                    .copied(),
                DedupeKey::Email => row
                    .emails
                    .iter()
                    .filter_map(|e| by_email.get(e.as_str()))
                    .flatten()
                    .find(|id| !ext_key || compatible(id))
                    .copied(),
            })
        });
        // External ids stay unique.
        if let Some(e) = &row.external_id {
            let problem = match (existing, by_ext.get(e).copied()) {
                (Some(id), Some(owner)) if owner != id => {
                    Some(format!("external_id {e:?} belongs to another contact"))
                }
                (None, Some(_)) => Some(format!("external_id {e:?} belongs to another contact")),
                (Some(id), None) => match ext_of.get(&id) {
                    Some(Some(cur)) if cur != e => Some(format!(
                        "external_id {e:?} differs from the matched contact's ({cur:?})"
                    )),
                    _ => None,
                },
                _ => None,
            };
            if let Some(msg) = problem {
                errors.push(error_row(tenant_id, job_id, n, raw, vec![msg]));
                continue;
            }
        }
        let id = match existing {
            Some(id) if fresh.contains_key(&id) => {
                // A later row of the same batch for a contact created above:
                // its fields replace, its phones, emails and tags add up.
                let held = fresh.get_mut(&id).expect("present");
                let m = &mut new_contacts[held.index];
                if let Some(f) = &row.first_name {
                    m.first_name = Set(f.clone());
                }
                if let Some(l) = &row.last_name {
                    m.last_name = Set(l.clone());
                }
                let (first, last) = (m.first_name.as_ref().clone(), m.last_name.as_ref().clone());
                m.search_name = Set(search_name(&first, &last));
                if row.external_id.is_some() && m.external_id.as_ref().is_none() {
                    m.external_id = Set(row.external_id.clone());
                }
                if let Some(l) = &row.language {
                    m.language = Set(Some(l.clone()));
                }
                if let Some(tz) = row.timezone {
                    m.timezone = Set(Some(tz.name().to_owned()));
                    m.timezone_source = Set(Some("explicit".into()));
                }
                held.add_parts(tenant_id, id, &row, &mut parts);
                if m.timezone.as_ref().is_none() {
                    let phones_l: Vec<(Phone, Option<String>)> =
                        row.phones.iter().map(|p| (p.clone(), None)).collect();
                    if let (Some(tz), Some(src)) = resolve_zone(None, &phones_l) {
                        m.timezone = Set(Some(tz));
                        m.timezone_source = Set(Some(src));
                    }
                }
                for (k, v) in &row.attributes {
                    new_attrs.retain(|a: &attr::ActiveModel| {
                        !(a.contact_id.as_ref() == &id && a.key.as_ref() == k)
                    });
                    new_attrs.push(attr_row(tenant_id, id, k, v));
                }
                stats.updated += 1;
                id
            }
            Some(id) => {
                update_existing(txn, tenant_id, id, &row, now).await?;
                stats.updated += 1;
                id
            }
            None => {
                let id = ContactId::new();
                let phones_l: Vec<(Phone, Option<String>)> =
                    row.phones.iter().map(|p| (p.clone(), None)).collect();
                let (tz, tz_source) = resolve_zone(row.timezone, &phones_l);
                let first = row.first_name.clone().unwrap_or_default();
                let last = row.last_name.clone().unwrap_or_default();
                new_contacts.push(contact::ActiveModel {
                    id: Set(id),
                    tenant_id: Set(tenant_id),
                    external_id: Set(row.external_id.clone()),
                    search_name: Set(search_name(&first, &last)),
                    first_name: Set(first),
                    last_name: Set(last),
                    timezone: Set(tz),
                    timezone_source: Set(tz_source),
                    language: Set(row.language.clone()),
                    created_at: Set(now),
                    updated_at: Set(now),
                });
                let mut held = Held {
                    index: new_contacts.len() - 1,
                    phones: Vec::new(),
                    emails: Vec::new(),
                    tags: Vec::new(),
                };
                held.add_parts(tenant_id, id, &row, &mut parts);
                let mut seen_keys = std::collections::HashSet::new();
                for (k, v) in row.attributes.iter().rev() {
                    if seen_keys.insert(k.clone()) {
                        new_attrs.push(attr_row(tenant_id, id, k, v));
                    }
                }
                fresh.insert(id, held);
                ext_of.insert(id, None);
                stats.created += 1;
                id
            }
        };
        // Later rows of the batch find this contact by its keys.
        if let Some(e) = &row.external_id {
            by_ext.insert(e.clone(), id);
            ext_of.insert(id, Some(e.clone()));
        }
        for ph in &row.phones {
            let ids = by_phone.entry(ph.e164.clone()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        for e in &row.emails {
            let ids = by_email.entry(e.as_str().to_owned()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        for (ch, st) in &row.consents {
            new_consents.retain(|(c, x, _)| !(*c == id && x == ch));
            new_consents.push((id, *ch, *st));
        }
        if let Some(l) = p.list_id {
            members.push((l, id));
        }
    }
    stats.failed = errors.len() as u64;
    for part in errors.chunks(500) {
        import_error::Entity::insert_many(part.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    // Bulk inserts, bounded so that no statement has too many parameters.
    for part in new_contacts.chunks(1000) {
        contact::Entity::insert_many(part.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    for part in parts.phones.chunks(2000) {
        phone::Entity::insert_many(part.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    for part in parts.emails.chunks(2000) {
        email::Entity::insert_many(part.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    for part in parts.tags.chunks(3000) {
        tag::Entity::insert_many(part.to_vec())
            .on_conflict(
                OnConflict::columns([tag::Column::ContactId, tag::Column::Tag])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    for part in new_attrs.chunks(1000) {
        attr::Entity::insert_many(part.to_vec())
            .on_conflict(
                OnConflict::columns([attr::Column::ContactId, attr::Column::Key])
                    .update_columns([
                        attr::Column::TextValue,
                        attr::Column::NumValue,
                        attr::Column::BoolValue,
                        attr::Column::DateValue,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    write_consents(txn, tenant_id, job_id, new_consents, now).await?;
    members.sort();
    members.dedup();
    for part in members.chunks(2000) {
        member::Entity::insert_many(part.iter().map(|(l, c)| member::ActiveModel {
            list_id: Set(*l),
            contact_id: Set(*c),
            tenant_id: Set(tenant_id),
            added_at: Set(now),
        }))
        .on_conflict(
            OnConflict::columns([member::Column::ListId, member::Column::ContactId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    }
    Ok(stats)
}

/// Records the consents of a batch that change something, each with its
/// entry in the consent history (as consent recorded any other way).
async fn write_consents(
    txn: &impl ConnectionTrait,
    tenant_id: TenantId,
    job_id: JobId,
    consents: Vec<(ContactId, Channel, ConsentStatus)>,
    now: chrono::DateTime<Utc>,
) -> Result<(), DbErr> {
    if consents.is_empty() {
        return Ok(());
    }
    let ids: Vec<ContactId> = consents
        .iter()
        .map(|c| c.0)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut current: HashMap<(ContactId, String), String> = HashMap::new();
    for part in ids.chunks(1000) {
        for c in consent::Entity::find()
            .filter(consent::Column::TenantId.eq(tenant_id))
            .filter(consent::Column::ContactId.is_in(part.to_vec()))
            .all(txn)
            .await?
        {
            current.insert((c.contact_id, c.channel), c.status);
        }
    }
    let detail = format!("job {job_id}");
    for (id, ch, st) in consents {
        if current
            .get(&(id, ch.as_str().to_owned()))
            .map(String::as_str)
            == Some(st.as_str())
        {
            continue;
        }
        consent::Entity::insert(consent::ActiveModel {
            contact_id: Set(id),
            channel: Set(ch.as_str().into()),
            tenant_id: Set(tenant_id),
            status: Set(st.as_str().into()),
            source: Set(super::consent::source::IMPORT.into()),
            detail: Set(Some(detail.clone())),
            recorded_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([consent::Column::ContactId, consent::Column::Channel])
                .update_columns([
                    consent::Column::Status,
                    consent::Column::Source,
                    consent::Column::Detail,
                    consent::Column::RecordedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        consent_event::ActiveModel {
            id: sea_orm::NotSet,
            tenant_id: Set(tenant_id),
            contact_id: Set(Some(id)),
            channel: Set(ch.as_str().into()),
            status: Set(st.as_str().into()),
            source: Set(super::consent::source::IMPORT.into()),
            address: Set(None),
            detail: Set(Some(detail.clone())),
            actor: Set(Some(format!("job:{job_id}"))),
            recorded_at: Set(now),
        }
        .insert(txn)
        .await?;
    }
    Ok(())
}

fn phone_row(t: TenantId, c: ContactId, e164: &str, position: i32) -> phone::ActiveModel {
    phone::ActiveModel {
        id: sea_orm::NotSet,
        tenant_id: Set(t),
        contact_id: Set(c),
        e164: Set(e164.to_owned()),
        label: Set(None),
        position: Set(position),
    }
}

fn email_row(t: TenantId, c: ContactId, e: &str, position: i32) -> email::ActiveModel {
    email::ActiveModel {
        id: sea_orm::NotSet,
        tenant_id: Set(t),
        contact_id: Set(c),
        email: Set(e.to_owned()),
        position: Set(position),
    }
}

/// Upsert into an existing contact: given fields replace, phones, emails and
/// tags are added, attributes are set.
async fn update_existing(
    txn: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: ContactId,
    row: &Row,
    now: chrono::DateTime<Utc>,
) -> Result<(), DbErr> {
    let Some(current) = super::store::find(txn, tenant_id, id).await? else {
        return Ok(());
    };
    let mut m: contact::ActiveModel = current.clone().into();
    let first = row.first_name.clone().unwrap_or(current.first_name.clone());
    let last = row.last_name.clone().unwrap_or(current.last_name.clone());
    m.search_name = Set(search_name(&first, &last));
    m.first_name = Set(first);
    m.last_name = Set(last);
    if row.external_id.is_some() && current.external_id.is_none() {
        m.external_id = Set(row.external_id.clone());
    }
    if let Some(l) = &row.language {
        m.language = Set(Some(l.clone()));
    }
    // The same zone again (say, re-importing an export) keeps its source.
    if let Some(tz) = row.timezone
        && current.timezone.as_deref() != Some(tz.name())
    {
        m.timezone = Set(Some(tz.name().to_owned()));
        m.timezone_source = Set(Some("explicit".into()));
    }
    m.updated_at = Set(now);
    m.update(txn).await?;
    let have_p: Vec<String> = phone::Entity::find()
        .filter(phone::Column::ContactId.eq(id))
        .all(txn)
        .await?
        .into_iter()
        .map(|p| p.e164)
        .collect();
    let mut pos = have_p.len() as i32;
    for ph in &row.phones {
        if !have_p.contains(&ph.e164) {
            phone_row(tenant_id, id, &ph.e164, pos).insert(txn).await?;
            pos += 1;
        }
    }
    if current.timezone_source.is_none() && row.timezone.is_none() {
        let phones_l: Vec<(Phone, Option<String>)> =
            row.phones.iter().map(|p| (p.clone(), None)).collect();
        if let (Some(tz), Some(src)) = resolve_zone(None, &phones_l) {
            contact::Entity::update_many()
                .col_expr(
                    contact::Column::Timezone,
                    sea_orm::sea_query::Expr::value(Some(tz)),
                )
                .col_expr(
                    contact::Column::TimezoneSource,
                    sea_orm::sea_query::Expr::value(Some(src)),
                )
                .filter(contact::Column::Id.eq(id))
                .exec(txn)
                .await?;
        }
    }
    let have_e: Vec<String> = email::Entity::find()
        .filter(email::Column::ContactId.eq(id))
        .all(txn)
        .await?
        .into_iter()
        .map(|e| e.email)
        .collect();
    let mut pos = have_e.len() as i32;
    for e in &row.emails {
        if !have_e.iter().any(|x| x == e.as_str()) {
            email_row(tenant_id, id, e.as_str(), pos)
                .insert(txn)
                .await?;
            pos += 1;
        }
    }
    // Tags are added once, whatever their case (as everywhere else).
    let mut have_t: Vec<String> = if row.tags.is_empty() {
        Vec::new()
    } else {
        tag::Entity::find()
            .filter(tag::Column::ContactId.eq(id))
            .all(txn)
            .await?
            .into_iter()
            .map(|t| t.tag.to_lowercase())
            .collect()
    };
    let mut add_t = Vec::new();
    for t in &row.tags {
        if !have_t.contains(&t.to_lowercase()) {
            have_t.push(t.to_lowercase());
            add_t.push(t.clone());
        }
    }
    if !add_t.is_empty() {
        tag::Entity::insert_many(add_t.iter().map(|t| tag::ActiveModel {
            contact_id: Set(id),
            tag: Set(t.clone()),
            tenant_id: Set(tenant_id),
        }))
        .on_conflict(
            OnConflict::columns([tag::Column::ContactId, tag::Column::Tag])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    }
    for (k, v) in &row.attributes {
        attr::Entity::insert(attr_row(tenant_id, id, k, v))
            .on_conflict(
                OnConflict::columns([attr::Column::ContactId, attr::Column::Key])
                    .update_columns([
                        attr::Column::TextValue,
                        attr::Column::NumValue,
                        attr::Column::BoolValue,
                        attr::Column::DateValue,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// The failed rows of an import, in row order.
pub async fn errors_page(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    job_id: JobId,
    after_row: i64,
    limit: u64,
) -> Result<Vec<import_error::Model>, DbErr> {
    import_error::Entity::find()
        .filter(import_error::Column::TenantId.eq(tenant_id))
        .filter(import_error::Column::JobId.eq(job_id))
        .filter(import_error::Column::RowNumber.gt(after_row))
        .order_by_asc(import_error::Column::RowNumber)
        .limit(limit)
        .all(db)
        .await
}

// ---- do-not-call import ----------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionImportParams {
    pub upload_id: UploadId,
    /// `phone` (calls and texts), `voice`, `sms` or `email`.
    pub channel: String,
    #[serde(default = "default_dnc")]
    pub reason: SuppressionReason,
    /// Which column holds the address (0-based); the first by default.
    #[serde(default)]
    pub column: usize,
    /// Whether the first row is a header to skip.
    #[serde(default)]
    pub has_header: bool,
}

fn default_dnc() -> SuppressionReason {
    SuppressionReason::DoNotCall
}

/// Imports a do-not-call (or suppression) list: one address per row,
/// normalised (phones to E.164 in the tenant's region, emails lower-cased).
/// An address already on the list, or met earlier in the file, counts as a
/// duplicate and keeps its first reason.
pub async fn run_suppression_import(ctx: &JobCtx) -> Result<Value, JobFailure> {
    let p: SuppressionImportParams = ctx.params()?;
    let db = ctx.db().clone();
    let tenant_id = ctx.tenant_id();
    let tenant = crate::iam::store::tenant(&db, tenant_id)
        .await
        .map_err(|e| fatal(e.to_string()))?;
    let up = get_upload(&db, tenant_id, p.upload_id)
        .await?
        .ok_or_else(|| fatal("the upload does not exist"))?;
    let is_email = p.channel == "email";
    let mut cp: Checkpoint = ctx
        .checkpoint()
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    if cp.plan.is_none() {
        check_text(&db, up.id).await?;
        let mut start = 0;
        if p.has_header {
            let (_, after) = read_header(&db, up.id, Encoding::Utf8).await?;
            start = after;
        }
        let total = count_rows(db.clone(), up.id, start).await?;
        ctx.set_total(total).await?;
        cp = Checkpoint {
            offset: start,
            plan: Some(Plan {
                columns: 0,
                fields: Vec::new(),
            }),
            ..Default::default()
        };
        let txn = crate::db::begin_write(&db).await?;
        ctx.save_progress(&txn, 0, serde_json::to_value(&cp).expect("serialises"))
            .await?;
        txn.commit().await?;
    }
    let mut rdr = records(db.clone(), up.id, cp.offset);
    let base = cp.offset;
    let mut rec = csv_async::ByteRecord::new();
    loop {
        if ctx.should_stop() {
            return Err(JobFailure::Interrupted);
        }
        let mut good: Vec<String> = Vec::new();
        let mut bad: Vec<import_error::ActiveModel> = Vec::new();
        let mut consumed = 0u64;
        while consumed < ctx.chunk_size() {
            let n = cp.rows + consumed + 1;
            let (msg, raw) = match rdr.read(&mut rec).await.map_err(FileError::from)? {
                Read::End => break,
                Read::TooLong(raw) => {
                    (format!("the row is longer than {MAX_ROW_BYTES} bytes"), raw)
                }
                Read::Row if is_blank(&rec) => continue,
                Read::Row => {
                    let parsed = match rec.get(p.column) {
                        None => Err(format!("the row has no column {}", p.column + 1)),
                        Some(b) => match std::str::from_utf8(b) {
                            Err(_) => Err("not valid UTF-8".to_owned()),
                            Ok(cell) => {
                                let cell = unneutralize(cell.trim());
                                if is_email {
                                    Email::parse(cell)
                                        .map(|e| e.as_str().to_owned())
                                        .map_err(|e| format!("{cell:?} {e}"))
                                } else {
                                    parse_phone(cell, &tenant.default_region)
                                        .map(|p| p.e164)
                                        .map_err(|e| format!("{cell:?} {e}"))
                                }
                            }
                        },
                    };
                    match parsed {
                        Ok(a) => {
                            consumed += 1;
                            good.push(a);
                            continue;
                        }
                        Err(msg) => (msg, raw_line(&rec, Encoding::Utf8)),
                    }
                }
            };
            consumed += 1;
            bad.push(error_row(tenant_id, ctx.id(), n, raw, vec![msg]));
        }
        if consumed == 0 {
            break;
        }
        let txn = crate::db::begin_write(&db).await?;
        let rows = good.len() as u64;
        good.sort();
        good.dedup();
        let now = Utc::now();
        let mut added = 0u64;
        for part in good.chunks(2000) {
            let rows = part
                .iter()
                .map(|a| super::entity::suppression::ActiveModel {
                    id: sea_orm::NotSet,
                    tenant_id: Set(tenant_id),
                    channel: Set(p.channel.clone()),
                    address: Set(a.clone()),
                    reason: Set(p.reason.as_str().into()),
                    source: Set(super::consent::source::IMPORT.into()),
                    detail: Set(Some(format!("job {}", ctx.id()))),
                    created_at: Set(now),
                });
            added += super::entity::suppression::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        super::entity::suppression::Column::TenantId,
                        super::entity::suppression::Column::Channel,
                        super::entity::suppression::Column::Address,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        cp.failed += bad.len() as u64;
        cp.created += added;
        cp.updated += rows - added;
        if !bad.is_empty() {
            import_error::Entity::insert_many(bad)
                .exec_without_returning(&txn)
                .await?;
        }
        cp.rows += consumed;
        cp.offset = base + rdr.position();
        ctx.save_progress(
            &txn,
            cp.rows,
            serde_json::to_value(&cp).expect("serialises"),
        )
        .await?;
        txn.commit().await?;
    }
    Ok(json!({
        "rows": cp.rows,
        "suppressed": cp.created,
        "duplicates": cp.updated,
        "failed": cp.failed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matching() {
        let h: Vec<String> = [
            "Customer ID",
            "First Name",
            "Surname",
            "Mobile",
            "E-mail",
            "Plan",
            "Notes",
        ]
        .map(String::from)
        .to_vec();
        let attrs = HashMap::from([("plan".to_owned(), AttrKind::String)]);
        let m = suggest_mapping(&h, &attrs);
        assert_eq!(m["external_id"], "Customer ID");
        assert_eq!(m["first_name"], "First Name");
        assert_eq!(m["last_name"], "Surname");
        assert_eq!(m["phone"], "Mobile");
        assert_eq!(m["email"], "E-mail");
        assert_eq!(m["attributes.plan"], "Plan");
        assert!(!m.values().any(|v| v == "Notes"));
        let p = plan(&h, &m, &attrs).unwrap();
        assert_eq!(p.columns, 7);
    }

    #[test]
    fn bad_headers_and_mappings() {
        let attrs = HashMap::new();
        let dup: Vec<String> = ["Email", "Name", "email"].map(String::from).to_vec();
        assert!(
            plan(&dup, &suggest_mapping(&dup, &attrs), &attrs)
                .unwrap_err()
                .message
                .contains("twice")
        );
        let h: Vec<String> = ["a", "b"].map(String::from).to_vec();
        assert!(
            plan(&h, &BTreeMap::new(), &attrs)
                .unwrap_err()
                .message
                .contains("no column")
        );
        let m = BTreeMap::from([("phone".to_owned(), "c".to_owned())]);
        assert!(
            plan(&h, &m, &attrs)
                .unwrap_err()
                .message
                .contains("no column \"c\"")
        );
        let m = BTreeMap::from([("attributes.plan".to_owned(), "a".to_owned())]);
        assert!(
            plan(&h, &m, &attrs)
                .unwrap_err()
                .message
                .contains("not defined")
        );
        let m = BTreeMap::from([("shoe_size".to_owned(), "a".to_owned())]);
        assert!(
            plan(&h, &m, &attrs)
                .unwrap_err()
                .message
                .contains("not a contact field")
        );
    }

    #[test]
    fn rows_are_validated_whole() {
        let attrs = HashMap::from([("spend".to_owned(), AttrKind::Number)]);
        let h: Vec<String> = ["id", "name", "phone", "email", "tags", "spend"]
            .map(String::from)
            .to_vec();
        let pl = plan(&h, &suggest_mapping(&h, &attrs), &attrs).unwrap();
        let params = ImportParams {
            upload_id: UploadId::new(),
            mapping: BTreeMap::new(),
            dedupe_by: default_dedupe(),
            tag_separator: ";".into(),
            encoding: Encoding::Utf8,
            list_id: None,
        };
        let rec = |fields: &[&[u8]]| csv_async::ByteRecord::from(fields.to_vec());
        let ok = read_row(
            &rec(&[
                b"c1",
                b"Ada Lovelace",
                b"(201) 555-0123",
                b"ADA@x.org",
                b"vip; gold",
                b"12.5",
            ]),
            &pl,
            &params,
            &attrs,
            "US",
        )
        .unwrap();
        assert_eq!(
            (ok.first_name.as_deref(), ok.last_name.as_deref()),
            (Some("Ada"), Some("Lovelace"))
        );
        assert_eq!(ok.phones[0].e164, "+12015550123");
        assert_eq!(ok.emails[0].as_str(), "ada@x.org");
        assert_eq!(ok.tags, ["vip", "gold"]);
        assert_eq!(ok.attributes, [("spend".to_owned(), AttrValue::Num(12.5))]);
        let bad = read_row(
            &rec(&[b"c2", b"Bob", b"12", b"not-an-email", b"", b"lots"]),
            &pl,
            &params,
            &attrs,
            "US",
        )
        .unwrap_err();
        assert_eq!(bad.len(), 3, "{bad:?}");
        let ragged = read_row(&rec(&[b"c3", b"x"]), &pl, &params, &attrs, "US").unwrap_err();
        assert!(ragged[0].contains("2 fields"));
        let latin1 = read_row(
            &rec(&[b"c4", b"Jos\xe9", b"", b"", b"", b""]),
            &pl,
            &params,
            &attrs,
            "US",
        )
        .unwrap_err();
        assert!(latin1[0].contains("UTF-8"));
        let p2 = ImportParams {
            encoding: Encoding::Latin1,
            ..params.clone()
        };
        assert_eq!(
            read_row(
                &rec(&[b"c4", b"Jos\xe9", b"", b"", b"", b""]),
                &pl,
                &p2,
                &attrs,
                "US"
            )
            .unwrap()
            .first_name
            .as_deref(),
            Some("José")
        );
        let empty = read_row(
            &rec(&[b"", b"", b"", b"", b"", b""]),
            &pl,
            &params,
            &attrs,
            "US",
        )
        .unwrap_err();
        assert!(empty[0].contains("no name"));
    }

    /// Every record of `data` read from `offset`, with the position after each.
    fn read_all(data: &[u8], offset: usize) -> Vec<(Result<Vec<String>, String>, u64)> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async {
                let mut r = Records::new(&data[offset..]);
                let mut rec = csv_async::ByteRecord::new();
                let mut out = Vec::new();
                loop {
                    let got = match r.read(&mut rec).await.unwrap() {
                        Read::End => return out,
                        Read::TooLong(raw) => Err(raw),
                        Read::Row => Ok(rec
                            .iter()
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                            .collect()),
                    };
                    out.push((got, offset as u64 + r.position()));
                }
            })
    }

    #[test]
    fn records_resume_at_any_record_boundary() {
        let mut data = b"\xEF\xBB\xBFid,name\r\na,\"x,\r\ny\"\n\nb,z\rc,".to_vec();
        data.extend(std::iter::repeat_n(b'q', MAX_ROW_BYTES + 10));
        data.extend_from_slice(b"\r\nd,\"\"\"w\"\"\"\r\ne,last");
        let all = read_all(&data, 0);
        let rows: Vec<_> = all.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(
            rows[0],
            Ok(vec!["id".into(), "name".into()]),
            "the BOM is skipped"
        );
        assert_eq!(rows[1], Ok(vec!["a".into(), "x,\r\ny".into()]));
        assert_eq!(
            rows[2],
            Ok(vec!["b".into(), "z".into()]),
            "blank lines are skipped"
        );
        let long = rows[3].clone().unwrap_err();
        assert!(
            long.starts_with("c,qqq") && long.ends_with('…') && long.len() < 2100,
            "{long}"
        );
        assert_eq!(rows[4], Ok(vec!["d".into(), "\"w\"".into()]));
        assert_eq!(rows[5], Ok(vec!["e".into(), "last".into()]));
        assert_eq!(rows.len(), 6);
        assert_eq!(all.last().unwrap().1, data.len() as u64);
        // A reader started at the position after any record reads the rest.
        for k in 0..all.len() {
            let rest = read_all(&data, all[k].1 as usize);
            assert_eq!(rest, all[k + 1..].to_vec(), "resuming after record {k}");
        }
    }

    #[test]
    fn binary_files_and_neutralised_cells() {
        assert!(looks_binary(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"));
        assert!(looks_binary(b"i\x00d\x00,\x00"), "UTF-16");
        assert!(looks_binary(&[1, 2, 3, 4, b'a', b'b']));
        assert!(!looks_binary(b"id,name\r\n1,Jos\xe9\t\x0c\n"));
        assert_eq!(unneutralize("'=1+1"), "=1+1");
        assert_eq!(unneutralize("'+44"), "+44");
        assert_eq!(unneutralize("'quoted'"), "'quoted'");
        assert_eq!(unneutralize("O'Brien"), "O'Brien");
    }
}
