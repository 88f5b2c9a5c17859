fn main() {
    let t = std::time::Instant::now();
    let p = spamscope::synth::SynthParams::default();
    let tab = spamscope::synth::generate(p);
    eprintln!("gen {:?}", t.elapsed());
    let f = std::fs::File::create(std::env::args().nth(1).unwrap()).unwrap();
    tab.write_csv(f).unwrap();
    eprintln!("write {:?}", t.elapsed());
}
