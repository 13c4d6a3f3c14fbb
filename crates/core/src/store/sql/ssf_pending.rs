//! Temporary: the SSF store is not yet built on the SQL backends.

/// Implements [`crate::store::SsfStore`] for `$store` answering "not yet" to every call.
macro_rules! ssf_not_yet {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl crate::store::SsfStore for $store {
            async fn insert_receiver(
                &self,
                _: &crate::ssf::SsfReceiver,
            ) -> Result<bool, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn get_receiver(
                &self,
                _: &str,
            ) -> Result<Option<crate::ssf::SsfReceiver>, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn receiver_by_token(
                &self,
                _: &str,
            ) -> Result<Option<crate::ssf::SsfReceiver>, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn receivers(
                &self,
                _: Option<&str>,
                _: usize,
            ) -> Result<Vec<crate::ssf::SsfReceiver>, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn update_receiver(
                &self,
                _: &crate::ssf::SsfReceiver,
            ) -> Result<bool, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn delete_receiver(
                &self,
                _: &str,
                _: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn insert_stream(
                &self,
                _: &crate::ssf::SsfStream,
            ) -> Result<bool, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn get_stream(
                &self,
                _: &str,
            ) -> Result<Option<crate::ssf::SsfStream>, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn receiver_streams(
                &self,
                _: &str,
            ) -> Result<Vec<crate::ssf::SsfStream>, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn streams(
                &self,
                _: Option<&str>,
                _: usize,
            ) -> Result<Vec<crate::ssf::SsfStream>, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn update_stream(
                &self,
                _: &crate::ssf::SsfStream,
            ) -> Result<bool, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn delete_stream(
                &self,
                _: &str,
                _: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn set_stream_status(
                &self,
                _: &str,
                _: crate::ssf::StreamStatus,
                _: Option<&str>,
                _: Option<&crate::ssf::NewSet>,
                _: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<crate::ssf::SsfStream>, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn request_verification(
                &self,
                _: &str,
                _: &str,
                _: &crate::ssf::NewSet,
                _: chrono::Duration,
                _: chrono::DateTime<chrono::Utc>,
            ) -> Result<crate::ssf::VerifyOutcome, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn claim_push(
                &self,
                _: chrono::DateTime<chrono::Utc>,
                _: chrono::Duration,
                _: usize,
            ) -> Result<Vec<crate::ssf::ClaimedSet>, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn record_set(
                &self,
                _: &crate::ssf::SetResult,
            ) -> Result<bool, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn release_sets(
                &self,
                _: &[(String, crate::ids::LeaseId)],
                _: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn poll(
                &self,
                _: &crate::ssf::PollRequest,
            ) -> Result<crate::ssf::PollBatch, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn list_sets(
                &self,
                _: &crate::ssf::SetFilter,
                _: Option<&str>,
                _: usize,
            ) -> Result<crate::store::Page<crate::ssf::StoredSet>, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn get_set(
                &self,
                _: &str,
            ) -> Result<Option<crate::ssf::StoredSet>, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn redrive_set(
                &self,
                _: &str,
                _: chrono::DateTime<chrono::Utc>,
            ) -> Result<crate::ssf::SetRedrive, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn pending_sets(&self) -> Result<u64, crate::store::StoreError> {
                Err(not_yet())
            }
            async fn prune_sets(
                &self,
                _: chrono::DateTime<chrono::Utc>,
                _: usize,
            ) -> Result<u64, crate::store::StoreError> {
                Err(not_yet())
            }
        }
    };
}
pub(in crate::store) use ssf_not_yet;

/// The error every call answers until the backend is built.
pub(in crate::store) fn not_yet() -> crate::store::StoreError {
    crate::store::StoreError::backend(std::io::Error::other(
        "the SSF store is not yet built on this backend",
    ))
}
