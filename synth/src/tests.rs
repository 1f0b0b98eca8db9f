use super::*;

#[test]
fn the_same_seed_gives_the_same_people() {
    let a: Vec<Value> = Generator::new(7).take(50).map(|c| c.to_json()).collect();
    let b: Vec<Value> = Generator::new(7).take(50).map(|c| c.to_json()).collect();
    let c: Vec<Value> = Generator::new(8).take(50).map(|c| c.to_json()).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn every_generated_constituent_is_valid_against_the_default_schema() {
    let schema = domain::Schema::from_toml(include_str!("../../policies/schema.toml")).unwrap();
    let mut fields = 0;
    for c in Generator::new(1).take(2000) {
        let parsed = schema
            .parse_object(domain::RecordKind::Subject, &c.fields)
            .unwrap_or_else(|e| panic!("{e}"));
        fields += parsed.len();
        for g in &c.gifts {
            schema
                .parse_object(domain::RecordKind::Gift, g)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    assert!(
        fields / 2000 >= 15,
        "about 20 fields each, got {}",
        fields / 2000
    );
}
