//! Sessions: a cursor that follows each run's result image.

use serde_json::json;

use super::fake::{self, IMAGE, Reply};

const OP1: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const OP2: &str = "aaaaaaaa-0000-4000-8000-000000000002";
const OP3: &str = "aaaaaaaa-0000-4000-8000-000000000003";
const R1: &str = "bbbbbbbb-0000-4000-8000-000000000001";
const R2: &str = "bbbbbbbb-0000-4000-8000-000000000002";

fn uuid_of(image: &crate::flavor::Image) -> String {
    image.uuid().map(|u| u.to_string()).unwrap_or_default()
}

#[crate::maybe]
pub async fn session_runs_advance_and_record_history() {
    let (mock, client) = fake::setup();
    fake::mount_spawn_for(&mock, "step1", OP1);
    fake::mount_run_events(&mock, OP1, &Reply::ok("one\n").image(R1));
    fake::mount_spawn_for(&mock, "step2", OP2);
    fake::mount_run_events(&mock, OP2, &Reply::ok("two\n").image(R2));

    let base = fake::image(&client);
    let mut session = base.session();
    assert_eq!(uuid_of(session.image()), IMAGE);

    let first = session.run("step1").wait().await.expect("step1");
    assert_eq!(uuid_of(&first), R1);
    assert_eq!(uuid_of(session.image()), R1);
    let second = session.shell("step2").wait().await.expect("step2");
    assert_eq!(second.stdout().unwrap(), b"two\n");
    assert_eq!(uuid_of(session.image()), R2);

    let bodies = fake::spawn_bodies(&mock);
    assert_eq!(bodies[0]["image"], json!(IMAGE));
    assert_eq!(bodies[0]["disposable"], json!(false), "session runs keep their image by default");
    assert_eq!(bodies[1]["image"], json!(R1), "the second run starts from the first one's result");
    assert_eq!(bodies[1]["disposable"], json!(false));
    let history: Vec<String> = session.history().iter().map(uuid_of).collect();
    assert_eq!(history, [IMAGE, R1, R2]);
    assert_eq!(session.last_run().map(|i| i.stdout().unwrap().to_vec()), Some(b"two\n".to_vec()));
    // The image the session started from is untouched.
    assert_eq!(uuid_of(&base), IMAGE);
}

#[crate::maybe]
pub async fn session_disposable_run_leaves_the_session_in_place() {
    let (mock, client) = fake::setup();
    fake::mount_spawn_for(&mock, "peek", OP1);
    fake::mount_run_events(&mock, OP1, &Reply::ok("looked\n"));
    fake::mount_spawn_for(&mock, "after", OP2);
    fake::mount_run_events(&mock, OP2, &Reply::ok("").image(R2));

    let mut session = fake::image(&client).session();
    let peek = session.run("peek").disposable(true).wait().await.expect("peek");
    assert_eq!(peek.uuid(), None);
    assert_eq!(peek.stdout().unwrap(), b"looked\n");
    assert_eq!(uuid_of(session.image()), IMAGE, "a disposable run does not move the session");
    assert_eq!(session.history().len(), 1);
    assert_eq!(session.last_run().and_then(|i| i.stdout().ok()).map(<[u8]>::to_vec), Some(b"looked\n".to_vec()));

    // The session is still usable, from where it was.
    session.run("after").wait().await.expect("after");
    let bodies = fake::spawn_bodies(&mock);
    assert_eq!(bodies[0]["disposable"], json!(true));
    assert_eq!(bodies[1]["image"], json!(IMAGE));
    assert_eq!(uuid_of(session.image()), R2);
}

#[crate::maybe]
pub async fn session_failed_run_leaves_the_last_good_image() {
    let (mock, client) = fake::setup();
    fake::mount_spawn_for(&mock, "good", OP1);
    fake::mount_run_events(&mock, OP1, &Reply::ok("").image(R1));
    fake::mount_spawn_for(&mock, "bad", OP2);
    fake::mount_run_events(&mock, OP2, &Reply::failed("spawn failed"));
    fake::mount_spawn_for(&mock, "again", OP3);
    fake::mount_run_events(&mock, OP3, &Reply::ok("").image(R2));

    let mut session = fake::image(&client).session();
    session.run("good").wait().await.expect("good");
    let err = session.run("bad").wait().await.unwrap_err();
    assert!(err.is_operation_failed(), "{err:?}");
    assert_eq!(err.operation_id(), Some(OP2));
    assert_eq!(uuid_of(session.image()), R1, "a failed run leaves the session on its last good image");
    let history: Vec<String> = session.history().iter().map(uuid_of).collect();
    assert_eq!(history, [IMAGE, R1]);

    session.run("again").wait().await.expect("again");
    let bodies = fake::spawn_bodies(&mock);
    assert_eq!(bodies[1]["image"], json!(R1));
    assert_eq!(bodies[2]["image"], json!(R1));
    assert_eq!(uuid_of(session.image()), R2);
}
