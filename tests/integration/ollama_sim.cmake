am_integration_test(ollama_sim integration/ollama_sim.sh)
