//! Looks that fit any stream, through the settings form: saved with the
//! config, pushed live to open overlays (and in the first frame of a new
//! one), explained next to their fields when bad, kept when a form leaves
//! them out, and warned about when the colours are hard to tell apart.

use chatpulse::domain::{Layout, MatchMode, MeterModel};

use super::{WAIT, post_form};
use crate::helpers::*;

/// Every field of the settings form, as a browser sends it.
fn full_form<'a>(changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("look_form", "1"),
        ("for_trigger", "yes, yeah"),
        ("against_trigger", "no"),
        ("left_label", "Nope"),
        ("right_label", "Yep"),
        ("decay_speed", "0.5"),
        ("model", "balance"),
        ("match_mode", "word"),
        ("layout", "horizontal"),
        ("for_color", "#2fd67b"),
        ("against_color", "#ff4d5e"),
        ("scale", "100"),
        ("font_weight", "800"),
        ("show_labels", "on"),
        ("show_hint", "on"),
    ];
    for (name, value) in changes {
        form.retain(|(n, _)| n != name);
        if !value.is_empty() {
            form.push((name, value));
        }
    }
    form
}

both_modes! {
async fn a_saved_look_reaches_open_overlays_live_and_new_ones_on_connect() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let mut overlay = app.connect(&login.overlay).await;
    let first = overlay.next_with("look", WAIT).await.expect("the look comes with the first frame");
    assert_eq!(first["look"]["layout"], "horizontal");
    assert_eq!(first["look"]["hint_for"], "type yes");

    let form = full_form(&[
        ("layout", "vertical"),
        ("for_color", "#0072B2"),
        ("against_color", "#e69f00"),
        ("scale", "120"),
        ("font_weight", "600"),
        ("show_voters", "on"),
        ("show_hint", ""),
        ("model", "classic"),
        ("match_mode", "exact"),
    ]);
    let saved = post_form(&app, &login, "/dashboard/config", &form).await;
    assert!(saved.url().query().unwrap_or("").contains("saved"), "{}", saved.status());
    let page = saved.text().await.unwrap();
    assert!(page.contains("width=\"200\" height=\"600\""), "the preview takes the vertical layout's size");

    let frame = overlay.next_with("look", std::time::Duration::from_secs(1)).await.expect("the look within a second");
    let look = &frame["look"];
    assert_eq!((look["layout"].as_str(), look["for_color"].as_str(), look["against_color"].as_str()), (Some("vertical"), Some("#0072b2"), Some("#e69f00")));
    assert_eq!((look["scale"].as_u64(), look["font_weight"].as_u64()), (Some(120), Some(600)));
    assert_eq!((look["show_voters"].as_bool(), look["show_hint"].as_bool(), look["show_labels"].as_bool()), (Some(true), Some(false), Some(true)));
    assert_eq!(look["hint_for"], "type yes or yeah");
    assert_eq!((frame["left_label"].as_str(), frame["right_label"].as_str()), (Some("Nope"), Some("Yep")));
    // The meter switched too: the next read shows it.
    let mut model = frame["model"].clone();
    let deadline = std::time::Instant::now() + WAIT;
    while model != "classic" && std::time::Instant::now() < deadline {
        model = overlay.next_with("model", WAIT).await.expect("frames")["model"].clone();
    }
    assert_eq!(model, "classic", "the meter switched too");

    let stored = app.repo.overlay_setup(login.overlay).await.unwrap().unwrap().config.config;
    assert_eq!((stored.model, stored.match_mode, stored.look.layout), (MeterModel::Classic, MatchMode::Exact, Layout::Vertical));
    assert!(!stored.look.show_hint && stored.look.show_voters && !stored.look.celebrate);

    // A new connection gets the new look at once, and so does the page.
    let mut another = app.connect(&login.overlay).await;
    let frame = another.next_with("look", WAIT).await.expect("the look comes with the first frame");
    assert_eq!(frame["look"]["layout"], "vertical");
    let html = app.http.get(format!("{}/overlay/{}", app.base, login.overlay)).send().await.unwrap().text().await.unwrap();
    let escaped_colour = html.contains("&#34;#0072b2&#34;") || html.contains("&quot;#0072b2&quot;");
    assert!(html.contains("data-layout=\"vertical\"") && escaped_colour, "{html}");
}
}

both_modes! {
async fn bad_look_values_are_explained_next_to_their_fields_and_nothing_is_saved() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let cases: [(&str, &str, &str); 9] = [
        ("layout", "diagonal", "Choose one of: horizontal, vertical."),
        ("for_color", "green", "Choose a colour, written #rrggbb."),
        ("against_color", "#12345", "Choose a colour, written #rrggbb."),
        ("scale", "300", "Choose a whole number from 50 to 150."),
        ("font_weight", "bold", "Choose one of: 400, 500, 600, 700, 800 or 900."),
        ("model", "loud", "Choose one of: balance, classic."),
        ("match_mode", "fuzzy", "Choose one of: word, exact."),
        ("show_hint", "maybe", "Choose one of: on, off."),
        ("for_trigger", "a,b,c,d,e,f,g,h,i,j,k", "Use at most 10 words, separated by commas."),
    ];
    for (field, value, message) in cases {
        let r = post_form(&app, &login, "/dashboard/config", &full_form(&[(field, value)])).await;
        assert_eq!(r.status(), 422, "{field}");
        let page = r.text().await.unwrap();
        assert!(page.contains(&format!("id=\"{field}-error\">{message}")), "{field}: the message next to it");
    }
    let shared = post_form(&app, &login, "/dashboard/config", &full_form(&[("against_trigger", "no, YEAH")])).await;
    assert_eq!(shared.status(), 422);
    assert!(shared.text().await.unwrap().contains("A word can count for one side only"));
    assert_eq!(app.repo.overlay_setup(login.overlay).await.unwrap().unwrap().config.version, 1, "nothing saved");
}
}

both_modes! {
async fn a_form_that_leaves_fields_out_keeps_their_saved_values() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let saved = post_form(&app, &login, "/dashboard/config", &full_form(&[("layout", "vertical"), ("show_voters", "on")])).await;
    assert!(saved.url().query().unwrap_or("").contains("saved"));
    // The five fields of the form before the control room, without its look.
    let old = [("for_trigger", "pizza"), ("against_trigger", "pasta"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "1")];
    let saved = post_form(&app, &login, "/dashboard/config", &old).await;
    assert!(saved.url().query().unwrap_or("").contains("saved"));
    let stored = app.repo.overlay_setup(login.overlay).await.unwrap().unwrap().config.config;
    assert_eq!((stored.for_trigger.as_str(), stored.look.layout), ("pizza", Layout::Vertical));
    assert!(stored.look.show_voters && stored.look.show_hint, "switches kept");
    assert_eq!(stored.model, MeterModel::Balance);
}
}

both_modes! {
async fn colours_hard_to_tell_apart_are_warned_about_and_the_safe_pair_is_offered() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let page = login.client.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("colour blindness"), "the defaults are fine");
    assert!(page.contains("data-for=\"#0072b2\" data-against=\"#e69f00\""), "the colour-blind-safe pair");
    let form = full_form(&[("for_color", "#008000"), ("against_color", "#ff0000")]);
    let saved = post_form(&app, &login, "/dashboard/config", &form).await;
    let page = saved.text().await.unwrap();
    assert!(page.contains("viewers with colour blindness may not tell the sides apart"), "warned");
    let dark = post_form(&app, &login, "/dashboard/config", &full_form(&[("against_color", "#00005a")])).await;
    assert!(dark.text().await.unwrap().contains("The “against” colour is hard to see on the dark track"));
}
}

both_modes! {
async fn a_new_streamer_starts_on_the_balance_meter_with_the_words_in_the_labels_and_a_hint() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let config = app.repo.overlay_setup(login.overlay).await.unwrap().unwrap().config.config;
    assert_eq!((config.model, config.match_mode), (MeterModel::Balance, MatchMode::Word));
    assert_eq!((config.left_label.as_str(), config.right_label.as_str()), ("No", "Yes"));
    let html = app.http.get(format!("{}/overlay/{}", app.base, login.overlay)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(">type yes<") && html.contains(">type no<"), "the hint names the words");
}
}
