//! Backend conformance suite: every case is written once against [`Stores`] and runs on every
//! backend. A new backend adds one `conformance!` line with a fixture that builds its stores.

mod claims;
mod clients;
mod fixtures;
mod health;
mod housekeeping;
mod operator_events;
pub mod postgres;
mod postgres_ssf;
mod redrives;
mod results;
mod sessions;
mod sids;
mod skips;
mod sqlite;
mod ssf;
mod ssf_delivery;
mod ssf_redrive;
mod stats;
mod termination;
mod user_wide;

use logoutd_core::Stores;
use std::any::Any;

/// A backend under test: its stores, and whatever must live as long as they do.
pub struct Backend {
    pub stores: Stores,
    pub _guard: Box<dyn Any + Send>,
}

/// A fresh in-memory backend.
pub async fn memory() -> Backend {
    Backend {
        stores: logoutd_core::MemoryStore::new().into_stores(),
        _guard: Box::new(()),
    }
}

/// A fresh SQLite backend in a temporary file.
pub async fn sqlite_file() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("logoutd.db").display());
    let stores = logoutd_core::SqliteStore::open(&url)
        .await
        .unwrap()
        .into_stores();
    Backend {
        stores,
        _guard: Box::new(dir),
    }
}

/// One `#[tokio::test]` per case for the backend built by `$make`.
macro_rules! conformance {
    ($backend:ident, $make:path) => {
        mod $backend {
            conformance!(@cases $make;
                sessions::session_round_trips_at_millisecond_precision,
                sessions::create_session_refuses_a_duplicate_id,
                sessions::create_session_refuses_unknown_clients_and_stores_nothing,
                sessions::user_sessions_list_active_ones_by_id_in_pages,
                sessions::add_client_is_idempotent_and_bumps_updated_at,
                sessions::add_client_refusals_change_nothing,
                sessions::metadata_ops_apply_and_bump_updated_at,
                sessions::metadata_refusals_change_nothing,
                sessions::metadata_with_nul_is_refused_alike,
                sessions::duplicate_clients_are_listed_once_in_joining_order,
                termination::ending_writes_rows_only_for_subscribed_clients_with_a_url,
                termination::all_mode_client_gets_every_initiator,
                termination::rows_are_pending_and_due_at_the_end,
                termination::repeated_end_adds_nothing,
                termination::ending_an_unknown_session_is_not_found,
                termination::user_wide_end_covers_every_active_session,
                termination::user_wide_end_of_many_sessions_ends_each_once_with_its_rows,
                termination::ending_wakes_the_dispatcher,
                termination::deleted_client_gets_no_row_and_sessions_keep_their_lists,
                termination::user_wide_end_writes_every_row_of_sessions_with_many_clients,
                sids::per_client_sids_are_stored_and_listed,
                sids::joining_again_with_a_sid_replaces_it_and_without_one_keeps_it,
                sids::a_client_s_own_sid_reaches_its_claimed_row_and_others_get_the_session_id,
                skips::an_end_reports_each_client_it_skips_or_holds_with_the_reason,
                skips::a_user_wide_end_reports_each_client_and_reason_once,
                skips::the_expiry_sweep_reports_what_it_skipped,
                clients::client_crud_and_paging,
                clients::delete_cancels_pending_and_in_flight_rows,
                clients::delete_forgets_the_pacing_state,
                clients::emptying_the_url_list_cancels_rows,
                clients::health_ping_answers,
                claims::claims_due_rows_oldest_first_under_a_lease,
                claims::rows_not_yet_due_are_not_claimed,
                claims::paused_client_rows_stay_pending_until_resumed,
                claims::expired_lease_is_reclaimed_and_old_result_ignored,
                claims::concurrent_claimers_never_share_a_row,
                claims::a_claim_gives_each_row_the_metadata_of_its_own_session,
                claims::text_that_needs_escaping_reaches_the_claim_unchanged,
                results::record_applies_decisions,
                stats::delivery_stats_count_states_and_outcomes_per_bucket,
                stats::deliveries_filter_by_initiator_and_creation_time,
                results::record_ignores_stale_and_unknown_leases,
                results::record_counts_only_the_rows_whose_lease_holds,
                results::attempt_history_is_oldest_first,
                results::release_returns_rows_without_counting_an_attempt,
                results::next_due_at_tracks_pending_and_leased_rows,
                results::deliveries_filter_and_page_by_id,
                results::redrive_requeues_failed_rows_only,
                results::event_progress_lists_the_rows_of_one_end_in_id_order,
                redrives::bulk_redrive_takes_exactly_the_failed_rows_matching_every_filter,
                redrives::bulk_redrive_by_ids_takes_only_the_named_failed_rows,
                redrives::bulk_redrive_pages_through_more_than_one_batch_once_each,
                redrives::a_repeated_key_replays_the_first_count_and_redrives_nothing,
                redrives::an_expired_key_is_forgotten_and_pruned,
                housekeeping::end_expired_ends_past_sessions_for_subscribed_clients_only,
                housekeeping::end_expired_respects_the_batch_limit,
                housekeeping::next_expiry_is_the_earliest_of_active_sessions,
                housekeeping::creating_an_expiring_session_wakes_the_sweeper,
                housekeeping::prune_finished_keeps_failed_and_young_rows,
                housekeeping::prune_keeps_sessions_with_live_rows_and_active_sessions,
                housekeeping::prune_works_in_batches,
                housekeeping::stats_count_live_and_dead_rows,
                housekeeping::claims_flag_rows_whose_lease_expired,
                user_wide::a_user_wide_end_writes_one_user_row_covering_every_session,
                user_wide::a_user_row_is_redriven_cancelled_and_pruned_like_any_other,
                health::health_counts_each_client_s_attempts_and_latency,
                health::batches_add_up_and_a_success_ends_the_streak,
                health::the_policy_pauses_a_client_that_keeps_failing,
                health::resume_releases_held_rows_in_write_order_with_a_fresh_budget,
                health::an_operator_pause_is_recorded_and_kept_when_paused_again,
                health::deleting_a_client_deletes_its_health,
                health::health_buckets_older_than_the_window_are_pruned,
                operator_events::pause_and_resume_write_one_event_each_only_on_change,
                operator_events::a_dead_letter_writes_delivery_failed_with_it,
                operator_events::events_are_claimed_under_a_lease_oldest_first,
                operator_events::webhook_results_follow_the_decision_and_failed_ones_are_redriven,
                operator_events::prune_removes_old_delivered_and_failed_events_only,
                ssf::receivers_round_trip_with_a_unique_aud_and_lookup_by_token,
                ssf::a_receiver_has_one_stream_and_changes_keep_its_status,
                ssf::a_session_end_writes_one_set_per_stream_in_scope,
                ssf::a_user_wide_end_writes_a_set_per_session,
                ssf::an_end_may_name_the_initiating_entity_of_its_sets,
                ssf::disabled_and_uninterested_streams_get_no_sets,
                ssf::a_paused_stream_holds_its_sets_until_enabled_then_releases_them_in_order,
                ssf::disabling_cancels_waiting_sets_but_keeps_its_stream_updated_row,
                ssf::deleting_a_stream_or_its_receiver_cancels_its_sets,
                ssf::a_session_end_with_sets_wakes_the_set_worker,
                ssf_delivery::push_rows_are_claimed_under_a_lease_recorded_released_and_reclaimed,
                ssf_delivery::a_push_claim_takes_each_streams_oldest_rows_up_to_its_room,
                ssf_delivery::a_poll_applies_acks_then_errors_then_hands_out_the_oldest,
                ssf_delivery::an_expired_poll_lease_hands_the_row_out_again_with_its_jti,
                ssf_delivery::verification_keeps_the_minimum_interval_per_stream,
                ssf_delivery::a_redrive_keeps_the_jti_and_prune_removes_only_old_finished_rows,
                ssf_delivery::retention_prunes_finished_sets_with_the_rest,
                ssf_redrive::bulk_set_redrive_takes_exactly_the_failed_rows_matching_every_filter,
                ssf_redrive::bulk_set_redrive_pages_through_more_than_one_batch_once_each,
                ssf_redrive::a_set_redrive_key_replays_and_belongs_to_one_operation,
                ssf_redrive::set_stats_count_waiting_and_dead_rows_and_the_oldest_due
            );
        }
    };
    (@cases $make:path; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                // A fixture may return `None` to skip (a server that is not there).
                let backend: Option<super::Backend> = $make().await.into();
                let Some(backend) = backend else { return };
                super::$module::$case(backend.stores.clone()).await;
            }
        )*
    };
}

conformance!(on_memory, super::memory);
conformance!(on_sqlite, super::sqlite_file);
conformance!(on_postgres, super::postgres::postgres_fixture);
