fn main() {
    print!("{}", fhirflow::validate::schema::to_text());
}
