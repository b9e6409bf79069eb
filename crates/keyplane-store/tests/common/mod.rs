//! The conformance story as tests, for any backend: `conformance_tests!(fresh)` where `fresh()`
//! returns a guard that must outlive the test and a store on an empty database.

#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        #[tokio::test]
        async fn key_pairs_behave_as_the_conformance_story_says() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::key_pairs(&s).await;
        }

        #[tokio::test]
        async fn bindings_and_power_behave_as_the_conformance_story_says() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::bindings(&s).await;
        }

        #[tokio::test]
        async fn instance_listing_pages_without_gaps() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::instance_listing(&s).await;
        }

        #[tokio::test]
        async fn nonces_are_kept_until_purged() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::nonces(&s).await;
        }

        #[tokio::test]
        async fn a_nonce_is_claimed_once_per_window() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::nonce_claims(&s).await;
        }

        #[tokio::test]
        async fn client_tokens_behave_as_the_conformance_story_says() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::client_tokens(&s).await;
        }

        #[tokio::test]
        async fn descriptions_change_and_say_when() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::descriptions(&s).await;
        }

        #[tokio::test]
        async fn ram_objects_behave_as_the_conformance_story_says() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::ram(&s).await;
        }

        #[tokio::test]
        async fn registration_tokens_expire_are_revoked_and_stay_in_their_account() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::registration_tokens(&s).await;
        }

        #[tokio::test]
        async fn the_audit_log_appends_filters_and_pages() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::audit(&s).await;
        }

        #[tokio::test]
        async fn a_write_commits_its_audit_record_with_it_or_not_at_all() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::audited_writes(&s).await;
        }

        #[tokio::test]
        async fn an_account_deleted_takes_everything_but_its_audit_records() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::account_deletion(&s).await;
        }

        #[tokio::test]
        async fn grants_and_revoked_key_pairs_behave_as_the_conformance_story_says() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::grants(&s).await;
        }

        #[tokio::test]
        async fn a_held_transition_completes_once_rescheduled() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::held_transitions(&s).await;
        }

        #[tokio::test]
        async fn the_audit_retention_purge_deletes_only_what_is_older_than_its_cutoff() {
            let (_g, s) = $fresh().await;
            keyplane_store::conformance::audit_retention(&s).await;
        }
    };
}
