//! Wire scenarios for execution (runs, results, event streams, polling, cancellation,
//! sessions, popen, inspection), written once and compiled for both flavors.
//!
//! `crate::flavor` (defined by each entry file) names the flavor's types and the few helpers
//! that truly differ (streams versus iterators, sleeping).

use std::time::{Duration, Instant};

use crate::support::Mock;

pub mod fake;

mod cancel;
mod grep;
mod inspect;
mod misuse;
mod parity;
mod popen;
mod results;
mod session;
mod spawn_body;
mod sse;

pub use cancel::*;
pub use grep::*;
pub use inspect::*;
pub use misuse::*;
pub use parity::*;
pub use popen::*;
pub use results::*;
pub use session::*;
pub use spawn_body::*;
pub use sse::*;

/// The scenarios of both flavors, kept in one place so none runs in one flavor only.
#[macro_export]
macro_rules! exec_scenarios {
    ($m:ident) => {
        $m!(
            // spawn body
            program_run_sends_every_option,
            shell_run_on_a_tag_names_the_tag,
            timeout_is_whole_seconds_rounded_up,
            stdin_text_is_ascii_and_binary_is_base64,
            stdin_from_path_and_reader_reader_read_once,
            files_are_deduplicated_then_placed_with_mode_and_owner,
            image_runs_default_to_disposable,
            // results
            result_fields_come_from_the_operation_after_completion,
            nonzero_exit_is_a_result_and_check_reports_it,
            output_goes_to_a_path_a_writer_or_nowhere,
            invalid_utf8_with_text_output_is_a_decode_error,
            tag_on_a_run_patches_the_result_after_success,
            tag_on_a_disposable_run_is_rejected_before_any_request,
            // SSE
            keepalives_multiline_data_and_unknown_events_are_handled,
            sse_error_reconnects_with_last_event_id_without_duplicates,
            gzip_compressed_event_stream_is_read,
            stream_yields_stdout_stderr_exit_finished_in_order,
            // polling fallback
            events_404_falls_back_to_polling_with_retry_after,
            events_405_polls_and_failed_is_operation_failed,
            polled_cancelled_is_operation_cancelled,
            // cancellation
            wait_timeout_cancels_the_operation,
            wait_timeout_while_polling_cancels_the_operation,
            dropping_an_unfinished_process_cancels_it,
            dropping_a_finished_process_sends_no_cancel,
            wait_timeout_bounds_an_events_request_that_hangs,
            popen_wait_timeout_cancels_once,
            stream_over_polling_fallback_replays_the_output,
            // sessions
            session_runs_advance_and_record_history,
            session_disposable_run_leaves_the_session_in_place,
            session_failed_run_leaves_the_last_good_image,
            // popen
            popen_returns_at_once_and_streams_live_stdout,
            popen_writes_stdin_and_kills_through_the_subprocess_route,
            popen_communicate_writes_closes_and_collects,
            popen_check_turns_a_nonzero_exit_into_process_failed,
            exec_posts_an_exec_spec_and_drives_its_own_spid,
            // misuse and bad input
            result_accessors_on_an_image_that_has_not_run_are_image_state_errors,
            running_a_disposable_result_is_rejected,
            bad_arguments_are_rejected_before_any_request,
            // inspection
            ls_read_and_download_an_image,
            download_is_atomic_when_the_body_breaks,
            archive_is_saved_to_a_file,
            apply_files_runs_true_with_the_files_and_keeps_the_image,
            tag_as_and_untag_an_image,
            session_popen_moves_the_session_when_it_finishes,
            session_tag_as_moves_the_session,
            prepared_run_shows_its_stdin,
            process_text_mode_yields_checked_lines,
            apply_files_takes_specs_and_plain_paths,
            dir_entries_read_list_and_download,
            // grep
            grep_sends_every_option_and_reads_typed_rows,
            grep_bad_arguments_are_rejected_before_any_request,
            grep_errors_and_waiting_for_the_answer
        );
    };
}

/// Waits (bounded) until `mock` has seen at least `n` requests to `method path`.
#[crate::maybe]
pub async fn wait_for_requests(mock: &Mock, method: &str, path: &str, n: usize) -> Vec<wiremock::Request> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = mock.requests_to(method, path);
        if seen.len() >= n || Instant::now() > deadline {
            return seen;
        }
        crate::flavor::sleep(Duration::from_millis(20)).await;
    }
}
