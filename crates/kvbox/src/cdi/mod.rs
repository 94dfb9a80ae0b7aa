//! CDI's programs in box mode: the importer an importer pod runs (`kvbox cdi-importer`), the upload server an upload
//! pod runs (`kvbox cdi-uploadserver`), and the upload proxy `kvbox server` runs.

pub(crate) mod format;
pub(crate) mod importer;
pub(crate) mod source;
pub(crate) mod uploadproxy;
pub(crate) mod uploadserver;
