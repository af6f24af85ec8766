from shoal.agent.start import run_then_exit

run_then_exit()
