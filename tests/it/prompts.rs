//! Prompts: supervisors upload WAV files of any common format (here
//! espeak-ng's 22 050 Hz speech and a sox-made 16 kHz stereo file), which
//! are decoded before they are stored and listed with their length; staff
//! may list and fetch them, only supervisors and admins change them; bad
//! names, files that are not audio and oversized uploads are refused and
//! change nothing; another tenant sees none of them.

use reqwest::Method;

use crate::both_backends;
use crate::helpers::*;

async fn put_wav(app: &TestApp, creds: &Creds, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    app.req(Method::PUT, &format!("/api/v1/prompts/{name}"), creds)
        .header("Content-Type", "audio/wav")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

fn espeak(dir: &std::path::Path, text: &str) -> Vec<u8> {
    let p = dir.join("speech.wav");
    let out = std::process::Command::new("espeak-ng")
        .arg("-w")
        .arg(&p)
        .arg(text)
        .output()
        .expect("espeak-ng runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(p).unwrap()
}

both_backends! {
    async fn supervisors_upload_prompts_others_only_read_them(app) {
        let tmp = tempfile::tempdir().unwrap();
        let speech = espeak(tmp.path(), "Thank you for calling. Please hold.");
        let sup = app.login("supervisor").await;
        let r = put_wav(&app, &sup, "welcome", speech.clone()).await;
        let v = json_ok(r, 200).await;
        assert_eq!(v["name"], "welcome");
        assert_eq!(v["sample_rate"], 22050);
        assert_eq!(v["channels"], 1);
        assert_eq!(v["bytes"].as_u64().unwrap(), speech.len() as u64);
        let ms = v["duration_ms"].as_u64().unwrap();
        let expected = (speech.len() as u64 - 44) * 1000 / (22050 * 2);
        assert!(ms.abs_diff(expected) < 50, "{ms} ms, expected about {expected}");

        // Another format: 16 kHz stereo 16-bit, made by sox from the speech.
        let stereo = tmp.path().join("stereo.wav");
        let out = std::process::Command::new("sox")
            .arg(tmp.path().join("speech.wav"))
            .args(["-r", "16000", "-c", "2", "-b", "16"])
            .arg(&stereo)
            .output()
            .expect("sox runs");
        assert!(out.status.success());
        let v = json_ok(put_wav(&app, &sup, "hold-music_2", std::fs::read(&stereo).unwrap()).await, 200).await;
        assert_eq!((v["sample_rate"].as_u64(), v["channels"].as_u64()), (Some(16000), Some(2)));

        // Staff read; the file comes back as uploaded.
        let agent = app.login("agent").await;
        let list = json_ok(app.get("/api/v1/prompts", &agent).await, 200).await;
        let names: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["hold-music_2", "welcome"]);
        let got = app.get("/api/v1/prompts/welcome", &agent).await;
        assert_eq!(got.status().as_u16(), 200);
        assert_eq!(got.headers()["content-type"], "audio/wav");
        assert_eq!(got.bytes().await.unwrap().to_vec(), speech);
        // Agents and marketers may not change them.
        expect_error(put_wav(&app, &agent, "welcome", b"RIFF".to_vec()).await, 403, "forbidden").await;
        let marketer = app.login("marketer").await;
        expect_error(app.get("/api/v1/prompts", &marketer).await, 403, "forbidden").await;

        // Bad input changes nothing.
        let e = expect_error(put_wav(&app, &sup, "welcome", b"this is not audio at all".to_vec()).await, 422, "validation_failed").await;
        assert!(e.to_string().contains("WAV"), "{e}");
        for bad in [".hidden", "a..b", &"x".repeat(101), "semi;colon"] {
            expect_error(put_wav(&app, &sup, bad, speech.clone()).await, 422, "validation_failed").await;
        }
        let r = app.req(Method::PUT, "/api/v1/prompts/huge", &sup)
            .header("Content-Type", "audio/wav")
            .header("Content-Length", (21u64 << 20).to_string())
            .body(vec![0u8; 1024])
            .send()
            .await;
        // Refused on the declared length (the server may close before reading).
        if let Ok(r) = r {
            expect_error(r, 413, "payload_too_large").await;
        }
        let got = app.get("/api/v1/prompts/welcome", &agent).await;
        assert_eq!(got.bytes().await.unwrap().to_vec(), speech, "the refused upload did not replace it");
        let list = json_ok(app.get("/api/v1/prompts", &agent).await, 200).await;
        assert_eq!(list.as_array().unwrap().len(), 2);

        // Another tenant sees nothing of them.
        let other = app.login_to("other", "admin@other.example", DEMO_PASSWORD).await;
        let list = json_ok(app.get("/api/v1/prompts", &other).await, 200).await;
        assert_eq!(list.as_array().unwrap().len(), 0);
        expect_error(app.get("/api/v1/prompts/welcome", &other).await, 404, "not_found").await;
        expect_error(app.delete("/api/v1/prompts/welcome", &other).await, 404, "not_found").await;

        // Deleted.
        let r = app.delete("/api/v1/prompts/welcome", &sup).await;
        assert_eq!(r.status().as_u16(), 204);
        expect_error(app.get("/api/v1/prompts/welcome", &agent).await, 404, "not_found").await;
    }
}
