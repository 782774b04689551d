from mcaclip.toyfaces.build import main

main()
